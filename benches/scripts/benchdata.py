"""What the Python benchmark scripts share: reading the shared data sets (TEXMEX .fvecs/.ivecs)
and this process's resident memory. Imported by hnswlib-raw.py and embedded-stores.py (the
script's own directory is on `sys.path`); needs numpy."""

import os

import numpy as np


def data_dir(name):
    """Directory of a shared data set: $ENGRAM_DATA/NAME, else ../shared/data/NAME beside the repo."""
    root = os.environ.get("ENGRAM_DATA") or os.path.join(os.path.dirname(__file__), "../../../shared/data")
    return os.path.join(root, name)


def read_vecs(path, dtype):
    """Rows of a TEXMEX .fvecs (dtype float32) or .ivecs (int32) file, shape (n, dim)."""
    raw = np.fromfile(path, dtype=np.int32)
    dim = int(raw[0])
    rows = raw.reshape(-1, dim + 1)[:, 1:]
    return rows.view(dtype) if dtype != np.int32 else rows


def rss_bytes():
    """Resident set size of this process in bytes (Linux /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

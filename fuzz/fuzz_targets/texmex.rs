//! The TEXMEX reader (`.fvecs`/`.ivecs`): any bytes give vectors or an error, never a panic,
//! and a success holds whole rows of the declared dimension.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = engram_dataset::parse_fvecs(data) {
        assert!(v.dim > 0 && v.len() * (4 + 4 * v.dim) == data.len());
        for i in 0..v.len() {
            assert_eq!(v.row(i).len(), v.dim);
        }
    }
    if let Ok(v) = engram_dataset::parse_ivecs(data) {
        assert_eq!(v.len() * (4 + 4 * v.dim), data.len());
    }
});

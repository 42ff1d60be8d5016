#!/usr/bin/env python3
"""Module cycles inside one crate's src/ (default engine/src): reads each module's
`use crate::…` and `use super::…` lines (test modules excluded) and prints every cycle; exits 1
when there is one."""
import glob, os, re, sys

root = sys.argv[1] if len(sys.argv) > 1 else "engine/src"
os.chdir(root)
files = [f for f in glob.glob("**/*.rs", recursive=True) if f != "lib.rs"]
name = lambda f: f[:-3].removesuffix("/mod").replace("/", "::")
known = {name(f) for f in files}
mods = {}
for f in files:
    m = name(f)
    s = re.sub(r"#\[cfg\(test\)\]\s*mod tests.*", "", open(f).read(), flags=re.S)
    deps = set()
    for kind, rest in re.findall(r"^\s*use (crate|super)::([\w:]+)", s, re.M):
        here = m.split("::") if f.endswith("mod.rs") else m.split("::")[:-1]
        path = rest.split("::") if kind == "crate" else here[:-1 if f.endswith("mod.rs") else len(here)] + rest.split("::")
        for k in range(len(path), 0, -1):
            cand = "::".join(path[:k])
            if cand in known:
                if cand != m and not m.startswith(cand + "::"):
                    deps.add(cand)
                break
    mods[m] = deps
cycles, color = [], {}
def dfs(n, stack):
    color[n] = 1
    for d in sorted(mods.get(n, ())):
        if color.get(d) == 1:
            cycles.append(stack[stack.index(d):] + [d] if d in stack else stack + [n, d])
        elif not color.get(d):
            dfs(d, stack + [d])
    color[n] = 2
for n in sorted(mods):
    if not color.get(n):
        dfs(n, [n])
for c in cycles:
    print("cycle:", " -> ".join(c))
print(f"{len(mods)} modules, {len(cycles)} cycles")
sys.exit(1 if cycles else 0)

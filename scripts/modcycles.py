#!/usr/bin/env python3
"""Module dependency cycles inside one crate, from its `use` lines and paths.

usage: scripts/modcycles.py CRATE_SRC_DIR [DEPTH]

Every `crate::a::b` and `super::x` path in a module's code (comments and
doc comments left out, `#[cfg(test)] mod tests` blocks and `tests.rs`
files left out: test code may reach anywhere) is an edge from the module to
the module it names, cut to DEPTH path components (default 1: the crate's
top-level modules). Prints every strongly connected component with more
than one member, i.e. every cycle; exits 1 if there is one.
"""
import os, re, sys

root = sys.argv[1]
depth = int(sys.argv[2]) if len(sys.argv) > 2 else 1

def module_of(path):
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel

def strip(text):
    out, skip_depth = [], None
    lines = text.split("\n")
    i = 0
    depth_now = 0
    while i < len(lines):
        l = lines[i]
        if skip_depth is None and re.match(r"\s*#\[cfg\(test\)\]", l) and i + 1 < len(lines) and re.match(r"\s*(pub(\(crate\))? )?mod \w+\s*\{", lines[i + 1]):
            skip_depth = depth_now
            i += 1
            l = lines[i]
            depth_now += l.count("{") - l.count("}")
            i += 1
            continue
        code = re.sub(r"//.*", "", l)
        code = re.sub(r'"(\\.|[^"\\])*"', '""', code)
        d = code.count("{") - code.count("}")
        if skip_depth is not None:
            depth_now += d
            if depth_now <= skip_depth:
                skip_depth = None
            i += 1
            continue
        depth_now += d
        out.append(code)
        i += 1
    return "\n".join(out)

edges = {}
mods = set()
for dp, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith(".rs") or f == "tests.rs":
            continue
        p = os.path.join(dp, f)
        m = module_of(p)
        me = tuple(m[:depth]) or ("<root>",)
        mods.add(me)
        text = strip(open(p).read())
        targets = set()
        # expand `use crate::{a, b::c}` groups
        for grp in re.finditer(r"crate::\{([^}]*)\}", text):
            for part in grp.group(1).split(","):
                part = part.strip()
                if part:
                    targets.add(tuple(re.findall(r"[a-z_][a-z0-9_]*", part.split("::")[0] and part)[:1]))
        for mt in re.finditer(r"crate((?:::[a-z_][a-z0-9_]*)+)", text):
            targets.add(tuple(mt.group(1).strip(":").split("::")))
        # `mod child;` children are named by relative paths (`child::x`,
        # `self::child`) in their parent module.
        children = set(re.findall(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;", text, re.M))
        for child in children:
            if re.search(r"(?<![:\w])(?:self::)?" + child + r"::", text):
                targets.add(tuple(m + [child]))
        for mt in re.finditer(r"\b((?:super::)+)((?:[a-z_][a-z0-9_]*(?:::)?)*)", text):
            ups = mt.group(1).count("super")
            base = m[: len(m) - ups] if f not in ("mod.rs", "lib.rs") else m[: len(m) - ups]
            rest = [x for x in mt.group(2).split("::") if x]
            targets.add(tuple(base + rest))
        for t in targets:
            t = tuple(x for x in t if x)
            if not t:
                continue
            t = t[:depth]
            if t != me:
                edges.setdefault(me, set()).add(t)
mods |= {t for ts in edges.values() for t in ts}
# keep only targets that are modules we saw (items like crate::RunConfig map to <root>)
known = {m for m in mods if os.path.exists(os.path.join(root, *m) + ".rs") or os.path.isdir(os.path.join(root, *m))}
def norm(t):
    while t and t not in known:
        t = t[:-1]
    return t or ("<root>",)
g = {}
for a, ts in edges.items():
    for t in ts:
        t = norm(t)
        if t != a and t != ("<root>",) and a != ("<root>",):
            g.setdefault(a, set()).add(t)
# Tarjan
idx, low, st, on, out, n = {}, {}, [], set(), [], [0]
def sc(v):
    idx[v] = low[v] = n[0]; n[0] += 1; st.append(v); on.add(v)
    for w in g.get(v, ()):
        if w not in idx:
            sc(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        c = []
        while True:
            w = st.pop(); on.discard(w); c.append(w)
            if w == v: break
        out.append(c)
sys.setrecursionlimit(10000)
for v in list(g):
    if v not in idx:
        sc(v)
cycles = [c for c in out if len(c) > 1]
for c in cycles:
    names = sorted("::".join(x) for x in c)
    print("cycle:", " <-> ".join(names))
    for a in sorted(c):
        print("   ", "::".join(a), "->", ", ".join(sorted("::".join(t) for t in g.get(a, ()) if t in c)))
if not cycles:
    print(f"no module cycle in {root} at depth {depth} ({len(known)} modules)")
sys.exit(1 if cycles else 0)

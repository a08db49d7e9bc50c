#!/usr/bin/env python3
"""Architecture checks over every crate's src/: no import cycle between
files, no source file over the size limit (tests excluded), `anyhow` only in
the binary crate, and no run-time wiring (`OnceLock`, `Weak`) in shoal-node.

A file depends on another when it names a path into it: `crate::a::b`,
`super::c` or `self::d`, in a `use` or inline. A path resolves to the
deepest file it reaches (`crate::calls::owner::Owner` -> calls/owner.rs).
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MAX_LINES = 600
BINARY_CRATES = {"shoal-cli"}
NO_WIRING_CRATES = {"shoal-node"}

PATH = re.compile(r"\b(crate|super|self)((?:::\w+)+|::\{)")
USE_GROUP = re.compile(r"\buse\s+(crate|super|self)::([\w:]*)\{([^;]*)\};", re.S)


def strip(text):
    """Source without comments, strings and test modules."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    cut = re.search(r"#\[cfg\(test\)\]\s*mod tests\s*\{", text)
    return text[: cut.start()] if cut else text


def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel


def file_of(src, module):
    for candidate in (os.path.join(src, *module) + ".rs", os.path.join(src, *module, "mod.rs")):
        if os.path.isfile(candidate):
            return candidate
    if not module:
        for name in ("lib.rs", "main.rs"):
            if os.path.isfile(os.path.join(src, name)):
                return os.path.join(src, name)
    return None


def resolve(src, here, kind, segments):
    if kind == "crate":
        base = []
    elif kind == "self":
        base = list(here)
    else:
        base = list(here[:-1])
        while segments and segments[0] == "super":
            base, segments = base[:-1], segments[1:]
    module = base + segments
    while True:
        found = file_of(src, module)
        if found:
            return found
        if not module:
            return None
        module = module[:-1]


def paths_in(text):
    for group in USE_GROUP.finditer(text):
        prefix = [s for s in group.group(2).split("::") if s]
        for item in re.split(r",(?![^{]*\})", group.group(3)):
            item = re.sub(r"\s+as\s+\w+", "", item).strip()
            first = re.match(r"[\w:]+", item)
            if first:
                yield group.group(1), prefix + [s for s in first.group(0).split("::") if s]
    for match in PATH.finditer(text):
        segments = [s for s in match.group(2).split("::") if s and s != "{"]
        yield match.group(1), segments


def cycles(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                out.append(sorted(scc))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def main():
    problems = []
    crates = os.path.join(ROOT, "crates")
    for crate in sorted(os.listdir(crates)):
        src = os.path.join(crates, crate, "src")
        if not os.path.isdir(src):
            continue
        graph = {}
        for dirpath, _, files in os.walk(src):
            for name in files:
                if not name.endswith(".rs"):
                    continue
                path = os.path.join(dirpath, name)
                raw = open(path, encoding="utf-8").read()
                rel = os.path.relpath(path, ROOT)
                is_test_file = name == "tests.rs" or "/tests/" in path
                text = strip(raw)
                lines = text.count("\n") + 1
                if not is_test_file and lines > MAX_LINES:
                    problems.append(f"{rel}: {lines} lines outside tests (limit {MAX_LINES})")
                if crate not in BINARY_CRATES and re.search(r"\banyhow\b", text):
                    problems.append(f"{rel}: anyhow in a library crate; use a typed error")
                # A `Weak` back-reference or a `OnceLock` filled in after
                # construction wires parts together at run time; a OnceLock
                # that only starts something lazily (`get_or_init`) does not.
                wiring = re.search(r"\bWeak\b", text) or (
                    re.search(r"\b(OnceLock|OnceCell)\b", text) and re.search(r"\.set\(", text)
                )
                if crate in NO_WIRING_CRATES and wiring:
                    problems.append(f"{rel}: OnceLock/Weak wiring; hand parts what they need when they are built")
                if is_test_file:
                    continue
                here = module_of(src, path)
                deps = graph.setdefault(path, set())
                for kind, segments in paths_in(text):
                    target = resolve(src, here, kind, segments)
                    if target and target != path:
                        deps.add(target)
        for cycle in cycles(graph):
            names = ", ".join(os.path.relpath(p, src) for p in cycle)
            problems.append(f"crates/{crate}: import cycle between {names}")
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} architecture problem(s)", file=sys.stderr)
        return 1
    print("architecture: no cycles, no oversized files, typed errors, no run-time wiring")
    return 0


if __name__ == "__main__":
    sys.exit(main())

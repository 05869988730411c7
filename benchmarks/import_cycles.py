"""Import cycles among the specbasis modules, read from the source (ast): module-level and function-level imports.

    python benchmarks/import_cycles.py          # prints each cycle (a strongly connected set of modules); exit 1 if any

`from a.b import c` is an arrow to a.b.c where that is a module, else to a.b; a package is its __init__.py. Importing
a submodule also runs its parent packages' __init__, which is not counted as an arrow (it would make every package a
cycle with its own modules). tests/test_import_cycles.py runs it.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "specbasis"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """{dotted name: path} of every module of the package (a package by its __init__.py)."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def arrows(root: Path = ROOT) -> dict[str, set[str]]:
    """{module: the specbasis modules it imports, anywhere in its body}."""
    known = modules(root)
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package
                    package = name.split(".") if is_package else name.split(".")[:-1]
                    package = package[: len(package) - node.level + 1]
                    base = ".".join(package + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            for target in targets:
                while target and target not in known:  # `import a.b.c` of a name inside a module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected sets of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def main() -> int:
    graph = arrows()
    found = cycles(graph)
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} import arrows, {len(found)} cycle(s)")
    for group in found:
        members = set(group)
        print("cycle: " + ", ".join(group))
        for v in group:
            print(f"  {v} -> {', '.join(sorted(graph[v] & members))}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

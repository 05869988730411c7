"""The package's shape (docs/development.md): layers point down, no import cycles, no private names across
modules, torch-free config layers, and no finetuning method's name switched on outside specbasis/methods/."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from specbasis.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "specbasis"
CAPABILITIES = ("analysis", "interventions", "methods", "training", "dynamics", "figures", "plan")
GENERIC = [p for p in PACKAGE.glob("*.py") if p.stem not in ("config",)] + list((PACKAGE / "io").glob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, name) of every specbasis import in the file, at any depth (function-level ones too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("specbasis"):
            assert node.level == 0, f"{path}: relative import"
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.append((full, None) if full in MODULES else (node.module, alias.name))
        elif isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.startswith("specbasis")]
    return found


GRAPH = {name: {m for m, _ in imports(path) if m != name} for name, path in MODULES.items()}


def test_no_import_cycles():
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(GRAPH.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_no_private_name_is_imported_across_modules():
    private = [(module_name(p), m, n) for p in [*PACKAGE.rglob("*.py"), *(ROOT / "workflow" / "scripts").glob("*.py"),
                                                *(ROOT / "benchmarks").glob("*.py")]
               for m, n in imports(p) if n and n.startswith("_") and not n.startswith("__")]
    assert private == []


@pytest.mark.parametrize("path", GENERIC, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_generic_modules_import_no_capability(path):
    wrong = sorted({m for m, _ in imports(path) if m.split(".")[1:2] and m.split(".")[1] in CAPABILITIES})
    assert wrong == [], f"{module_name(path)} imports {wrong}"


def test_config_plan_and_method_settings_import_no_torch():
    code = ("import sys, specbasis.config, specbasis.plan, specbasis.methods, specbasis.families, "
            "specbasis.training.settings; print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


def method_name_switches(path: Path) -> list[str]:
    """Comparisons against a method's name: `x == "spectral"`, `x != "full"`, `x in ("lora", ...)`."""
    names = set(METHODS)
    if path.suffix != ".py":  # Snakemake files
        pattern = re.compile(r"""(==|!=|\bin)\s*[\(\[{]?\s*["'](%s)["']""" % "|".join(names))
        return [f"{path.name}:{i}" for i, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    hits = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            consts = [c.value for s in sides for c in ([s] if isinstance(s, ast.Constant) else
                      getattr(s, "elts", [])) if isinstance(c, ast.Constant)]
            if names & {c for c in consts if isinstance(c, str)}:
                hits.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return sorted(set(hits))


def test_no_method_name_is_switched_on_outside_the_methods_package():
    files = [p for p in PACKAGE.rglob("*.py") if "methods" not in p.relative_to(PACKAGE).parts]
    files += [*(ROOT / "workflow" / "scripts").glob("*.py"), *(ROOT / "workflow" / "rules").glob("*.smk"),
              *(ROOT / "benchmarks").glob("*.py"), ROOT / "Snakefile"]
    assert [hit for f in files for hit in method_name_switches(f)] == []


def test_the_switch_finder_finds_switches(tmp_path):
    """The check above would see one (a test of the test)."""
    (tmp_path / "x.py").write_text('if m["method"] == "spectral" or name in ("lora", "dora"):\n    pass\n')
    (tmp_path / "x.smk").write_text('    if method.get("method") == "spectral":\n')
    global ROOT
    old, ROOT = ROOT, tmp_path
    try:
        assert method_name_switches(tmp_path / "x.py") == ["x.py:1"]
        assert method_name_switches(tmp_path / "x.smk") == ["x.smk:1"]
    finally:
        ROOT = old


def results_paths_written_out(source: str) -> list[str]:
    """String literals (f-strings too) that begin with 'results/', docstrings left out."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    docstrings |= {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if node.value.startswith("results/"):
                found.append(node.value)
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            if str(node.values[0].value).startswith("results/"):
                found.append(ast.unparse(node))
    return [f for f in found if f not in {"results/"}]


@pytest.mark.parametrize("path", sorted((ROOT / "workflow" / "scripts").glob("*.py")), ids=lambda p: p.name)
def test_scripts_take_their_paths_from_snakemake(path):
    """A suite writes to its own folder (results/ or results/<name>/: specbasis.plan.outputs): a script that wrote
    out 'results/...' would read or write the default suite's files."""
    assert results_paths_written_out(path.read_text()) == []


def test_the_results_path_finder_finds_them():
    source = '"""results/ in a docstring"""\nx = f"results/models/{m}"\ny = "results/svd"\n'
    assert sorted(results_paths_written_out(source)) == ["f'results/models/{m}'", "results/svd"]

"""No module of the project imports in a cycle, counting imports inside functions; every module imports."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent.name for p in REPO.glob("*/__init__.py") if p.parent.name != "tests")


def modules() -> dict[str, Path]:
    return {f"{path.parent.name}.{path.stem}" if path.stem != "__init__" else path.parent.name: path
            for package in PACKAGES for path in sorted((REPO / package).glob("*.py"))}


def project_imports(path: Path, known: set[str]) -> set[str]:
    """Project modules `path` imports anywhere in it (top level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a module importing itself."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_detector_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_project_module_imports_in_a_cycle():
    mods = modules()
    graph = {name: project_imports(path, set(mods)) - {name.rsplit(".", 1)[0]} for name, path in mods.items()}
    assert "bert.data" in graph and "common.harness" in graph
    assert cycles(graph) == []


def test_no_benchmark_module_imports_train_but_its_bench():
    mods = modules()
    for name, path in mods.items():
        importers = {f"{name.split('.')[0]}.bench"}
        for imported in project_imports(path, set(mods)):
            if imported.endswith(".train") and name not in importers:
                pytest.fail(f"{name} imports {imported}: train.py wires a run; only its bench.py times its step")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_imports(package):
    # a fresh interpreter per package: importing must not depend on what another test imported first
    names = [name for name in modules() if name.split(".")[0] == package]
    proc = subprocess.run([sys.executable, "-c", "import importlib, sys\n"
                           "for n in sys.argv[1:]: importlib.import_module(n)", *names],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


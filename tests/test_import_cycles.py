"""No import circle among the project's modules: every import, at the top of a file or inside a
function, points one way. Read from the source (ast), so a lazy import counts as much as any."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("liveness", "monitor", "demo", "bench")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts and "tests" not in path.parts:
                out[module_name(path)] = path
    return out


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules that the file imports (`from . import x` names module x when it is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_it_finds_a_planted_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_it_reads_relative_and_lazy_imports(tmp_path):
    path = tmp_path / "views.py"
    path.write_text("from .. import tasks\n\ndef f():\n    from ..labels import set_labels\n")
    known = {"monitor", "monitor.views", "monitor.views.x", "monitor.tasks", "monitor.labels"}
    assert imported(path, "monitor.views.x", known) == {"monitor.tasks", "monitor.labels"}


def test_it_has_no_import_circle():
    modules = project_modules()
    known = set(modules)
    # a package's __init__ is where its modules are reached from: an edge to it is no circle
    graph = {name: {m for m in imported(path, name, known) if m not in PACKAGES} for name, path in modules.items()}
    assert cycles(graph) == []


def test_it_imports_no_private_name_from_another_module():
    known = set(project_modules())
    found = []
    for path in sorted([*ROOT.glob("tests/*.py"), *project_modules().values()]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] in PACKAGES):
                names = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                # a private module (bench/_common.py) is the package's own, not a name taken from a module
                found += [f"{path.relative_to(ROOT)}: {n}" for n in names if f"{node.module}.{n}" not in known]
    assert found == []

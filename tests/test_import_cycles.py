"""No import cycles among uffdsim's modules outside ``uffdsim.mm`` (imports inside functions count too).

Imports are read with :mod:`ast`, so a cycle is found even where a lazy import hides it at run time.
A module ``a.b`` importing from package ``a`` is an edge to ``a/__init__``; ``from . import x``
is an edge to the submodule ``x`` when there is one.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "uffdsim"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the uffdsim modules it imports (anywhere in its body)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    deps.add(sub if sub in files else target)
        graph[mod] = {d for d in deps if d in files and d != mod}
    return graph


def cycles(graph: dict[str, set[str]], skip: str = "uffdsim.mm") -> list[list[str]]:
    """Every strongly connected component of more than one module, ignoring modules under ``skip``."""
    keep = {m for m in graph if m != skip and not m.startswith(skip + ".")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:   # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v] & keep):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(keep):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_outside_mm() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_detector_finds_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "uffdsim"
    (pkg / "backends").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "backends" / "__init__.py").write_text("")
    (pkg / "runner.py").write_text("def f():\n    from .backends.sim import X\n")
    (pkg / "backends" / "sim.py").write_text("from ..runner import f\nX = 1\n")
    (pkg / "mm").mkdir()
    (pkg / "mm" / "__init__.py").write_text("")
    (pkg / "mm" / "a.py").write_text("from . import b\n")
    (pkg / "mm" / "b.py").write_text("from . import a\n")
    graph = import_graph(pkg)
    assert cycles(graph) == [["uffdsim.backends.sim", "uffdsim.runner"]]
    with pytest.raises(AssertionError):
        assert not cycles(graph)


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module ``start`` imports, directly or not: module -> the module that imports it."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        mod = todo.pop()
        for dep in sorted(graph.get(mod, ())):
            if dep not in seen and dep != start:
                seen[dep] = mod
                todo.append(dep)
    return seen


def import_chain(seen: dict[str, str], start: str, end: str) -> str:
    chain = [end]
    while chain[-1] != start:
        chain.append(seen[chain[-1]])
    return " -> ".join(reversed(chain))


#: the simulator: the model, its kernel profiles and its backend (issue 18)
SIMULATOR = ("uffdsim.mm", "uffdsim.kernels", "uffdsim.userfaultfd", "uffdsim.backends.sim")


def layer_violations(graph: dict[str, set[str]], starts: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    """Import chains from a module under ``starts`` to a module under ``forbidden``."""
    under = lambda mod, roots: any(mod == r or mod.startswith(r + ".") for r in roots)  # noqa: E731
    out = []
    for start in sorted(m for m in graph if under(m, starts)):
        seen = reachable(graph, start)
        out += [import_chain(seen, start, m) for m in sorted(seen) if under(m, forbidden)]
    return out


def test_the_simulator_does_not_import_the_kernel_backend() -> None:
    assert layer_violations(import_graph(), SIMULATOR, ("uffdsim.backends.kernel", "uffdsim.lab")) == []


def test_widgets_do_not_import_the_command_line() -> None:
    assert layer_violations(import_graph(), ("uffdsim.widgets",), ("uffdsim.cli", "uffdsim.backends.kernel.cli",
                                                                     "uffdsim.__main__")) == []


def test_layer_check_finds_a_chain(tmp_path: Path) -> None:
    pkg = tmp_path / "uffdsim"
    (pkg / "widgets").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "widgets" / "__init__.py").write_text("")
    (pkg / "widgets" / "k.py").write_text("def f():\n    from ..compare import g\n")
    (pkg / "compare.py").write_text("from .cli import x\n")
    (pkg / "cli.py").write_text("")
    assert layer_violations(import_graph(pkg), ("uffdsim.widgets",), ("uffdsim.cli",)) == [
        "uffdsim.widgets.k -> uffdsim.compare -> uffdsim.cli"]


def test_the_kernel_backend_never_borrows_the_models_answers() -> None:
    """No module of the kernel backend imports the model (its argument checks, validate_range(), ...):
    what the kernel says is asked of the kernel (issue 18)."""
    graph = import_graph()
    model = ("uffdsim.mm", "uffdsim.userfaultfd", "uffdsim.backends.sim")
    borrowed = sorted(f"{mod} -> {dep}" for mod, deps in graph.items()
                      if mod.startswith("uffdsim.backends.kernel") for dep in deps
                      if any(dep == m or dep.startswith(m + ".") for m in model))
    assert borrowed == []

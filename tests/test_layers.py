"""The package's layers only look down: read every import (module level, inside functions, by string) and check.

Layers, bottom up (see "How the code is laid out" in the README):

* ``sse_sim.events`` stands alone (it may use ``sse_sim.errors`` and the shared validation
  messages, nothing else of sse_sim);
* the core (scenario, distributions, workload, records, tables, engine, metrics, analysis,
  results, simulation, sizing, sweep, ...) never imports plots, matplotlib, a command line
  module or the real backend;
* the real backend (``sse_sim.real``) imports the workload, the records schema and the events,
  never the simulation engine, ``simulation`` or what stands above them;
* ``sse_sim.compare`` stands above both backends; plots and the command line above everything.

No two modules may import each other, directly or through others, and no module may import by
string (``__import__`` / ``importlib.import_module``) to hide such a loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sse_sim"
MAX_LINES = 800


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(module: str, level: int, current: str) -> str:
    if level == 0:
        return module
    base = current.split(".")
    if not _is_package(current):
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _imports(name: str) -> tuple[set[str], list[str]]:
    """(every module or top-level library ``name`` imports, string imports found)."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    found: set[str] = set()
    by_string: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node.module or "", node.level, name)
            for alias in node.names:
                child = f"{target}.{alias.name}"
                found.add(child if child in MODULES else target)
        elif isinstance(node, ast.Call):
            func = node.func
            callee = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if callee in ("__import__", "import_module"):
                arg = node.args[0] if node.args else None
                by_string.append(arg.value if isinstance(arg, ast.Constant) else ast.unparse(node))
    return found, by_string


GRAPH: dict[str, set[str]] = {}
STRING_IMPORTS: dict[str, list[str]] = {}
for _name in MODULES:
    _found, _strings = _imports(_name)
    GRAPH[_name] = _found
    if _strings:
        STRING_IMPORTS[_name] = _strings


def _internal(name: str) -> set[str]:
    return {m for m in GRAPH[name] if m in MODULES and m != name}


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _is_cli(module: str) -> bool:
    return module == "sse_sim.cli" or module.endswith("_cli") or module.endswith(".cli") or module.split(".")[-1].startswith("cli_")


CORE = [
    m
    for m in MODULES
    if m != "sse_sim"
    and not _under(m, "sse_sim.real")
    and not _under(m, "sse_sim.events")
    and not _is_cli(m)
    and m not in ("sse_sim.plots", "sse_sim.compare")
]
REAL = [m for m in MODULES if _under(m, "sse_sim.real") and not _is_cli(m) and m != "sse_sim.real"]
EVENTS = [m for m in MODULES if _under(m, "sse_sim.events")]
# What sse_sim.events may use from outside itself.
EVENTS_MAY_USE = {"sse_sim.errors", "sse_sim.validation_errors"}


def test_the_graph_reads_the_whole_package():
    assert {"sse_sim.engine", "sse_sim.records", "sse_sim.plots", "sse_sim.cli", "sse_sim.events"} <= set(MODULES)
    assert "sse_sim.blocks" in _internal("sse_sim.simulation")
    assert "sse_sim.records" in _internal("sse_sim.blocks")
    assert "matplotlib.pyplot" in GRAPH["sse_sim.plots"]
    assert CORE and REAL and EVENTS


def test_no_import_by_string():
    assert STRING_IMPORTS == {}


@pytest.mark.parametrize("module", CORE)
def test_core_never_imports_plots_cli_or_the_real_backend(module):
    bad = sorted(
        m
        for m in GRAPH[module]
        if _under(m, "matplotlib")
        or m in ("sse_sim.plots", "sse_sim.compare", "typer", "click")
        or _under(m, "sse_sim.real")
        or (m in MODULES and _is_cli(m))
    )
    assert not bad, f"{module} imports {bad}: the core must not reach plots, CLI or the real backend"


@pytest.mark.parametrize("module", REAL)
def test_real_backend_never_imports_the_simulator(module):
    above = ("sse_sim.engine", "sse_sim.node_stage", "sse_sim.simulation", "sse_sim.sweep", "sse_sim.sizing", "sse_sim.compare", "sse_sim.plots", "sse_sim.cli")
    bad = sorted(m for m in GRAPH[module] if m in above or _under(m, "matplotlib"))
    assert not bad, f"{module} imports {bad}: the real backend stands beside the simulator, not on it"


@pytest.mark.parametrize("module", EVENTS)
def test_events_stand_alone(module):
    bad = sorted(m for m in _internal(module) if not _under(m, "sse_sim.events") and m not in EVENTS_MAY_USE)
    assert not bad, f"{module} imports {bad}: sse_sim.events stands alone"


def test_only_plots_imports_matplotlib():
    users = sorted(m for m, found in GRAPH.items() if any(_under(f, "matplotlib") for f in found))
    assert users == ["sse_sim.plots"]


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), over internal imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in _edges(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(MODULES):
        if v not in index:
            visit(v)
    return out


def _edges(v: str) -> set[str]:
    # A package's __init__ re-exporting its children is not a loop with a child that imports a
    # sibling through the package: only edges from a module to a non-ancestor count.
    return {w for w in _internal(v) if not (_is_package(w) and _under(v, w))}


def test_no_import_loops():
    assert _cycles() == []


def test_cycle_finder_finds_a_loop():
    saved = {k: set(v) for k, v in GRAPH.items()}
    try:
        GRAPH["sse_sim.records"].add("sse_sim.metrics")
        assert ["sse_sim.metrics", "sse_sim.records"] in _cycles()
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_file_over_the_limit(module):
    n = len(MODULES[module].read_text().splitlines())
    assert n <= MAX_LINES, f"{MODULES[module]} has {n} lines (at most {MAX_LINES}): it is two rooms"

"""The package's layout holds: no import circles, nothing outside ``ncsn.commands`` and
``ncsn.cli`` imports a command module, ncsn imports sit at the top of each module, no module is
over 400 lines, and every module imports on its own."""

import ast
import importlib
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ncsn"
MODULES = {
    ".".join(("ncsn", *p.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__"): p
    for p in sorted(SRC.rglob("*.py"))
}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported ncsn module, at the module's top level) for every import statement."""
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name.startswith("ncsn"):
                out.append((name, node in tree.body))
                break
    return out


GRAPH = {m: {t for t, _ in _imports(p) if t != m} for m, p in MODULES.items()}


def _is_command(module: str) -> bool:
    return module == "ncsn.cli" or module.startswith("ncsn.commands")


def test_no_module_imports_a_command_module_except_the_command_line():
    upward = [(a, b) for a, deps in GRAPH.items() for b in deps if _is_command(b)]
    assert [(a, b) for a, b in upward if not _is_command(a)] == []


def test_the_import_graph_has_no_circle():
    """Depth-first search; the package ``ncsn`` (the public API, which imports everything)
    is left out: library modules import ``ncsn.X`` directly, never ``ncsn`` itself."""
    graph = {m: deps - {"ncsn"} for m, deps in GRAPH.items() if m != "ncsn"}
    assert all("ncsn" not in deps for deps in graph.values())
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            assert state.get(t) != 1, " -> ".join([*path, m, t])
            if t not in state:
                visit(t, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_ncsn_imports_are_at_the_top_of_each_module():
    inner = [(m, t) for m, p in MODULES.items() for t, top in _imports(p) if not top]
    assert inner == []


def test_no_module_is_over_400_lines():
    sizes = {m: len(p.read_text().splitlines()) for m, p in MODULES.items()}
    assert {m: n for m, n in sizes.items() if n > 400} == {}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_imports_on_its_own(module, monkeypatch):
    for name in [n for n in sys.modules if n == "ncsn" or n.startswith("ncsn.")]:
        monkeypatch.delitem(sys.modules, name)
    importlib.import_module(module)

"""The package's layering, read from the import graph of ``src/gcbridge`` (``ast``, nothing is imported).

The layers, lowest first::

    gcbridge, gcbridge._json, gcbridge._logs,    leaf helpers: import nothing of the project
    gcbridge.secrets
    core        pure decisions                   imports nothing of the project
    genesys     the notification client          core + leaf helpers
    servicenow  the writer (takes rows)          core + leaf helpers
    outbox      the durable queue                core + leaf helpers (knows neither Genesys nor ServiceNow)
    sim         the two simulators               core + leaf helpers (neither the client nor the writer)
    bridge      the service: joins them all      anything (the event -> row mapping and the outbox sink
                                                 adapter live here)

Every import counts, wherever it is written: an import inside a function or an ``if TYPE_CHECKING`` block
is still an edge, so hiding a cycle there does not hide it from :func:`cycles`. ``TYPE_CHECKING`` blocks are
not allowed (they usually hide a cycle from the interpreter; a Protocol in the lower module is the cure),
except where :data:`DEFERRED_FOR_STARTUP` names them with the reason. Function-level imports are otherwise
allowed (the CLI defers heavy imports so that ``--help`` is fast; the client loads its optional compiled
intake lazily).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
ROOT = "gcbridge"
LEAF_HELPERS = frozenset({"gcbridge", "gcbridge._json", "gcbridge._logs", "gcbridge.secrets"})

# layer -> the layers it may import (besides itself and the leaf helpers)
ALLOWED: Mapping[str, frozenset[str]] = {
    "leaf": frozenset(),
    "core": frozenset(),
    "genesys": frozenset({"core"}),
    "servicenow": frozenset({"core"}),
    "outbox": frozenset({"core"}),
    "sim": frozenset({"core"}),
    "bridge": frozenset({"core", "genesys", "servicenow", "outbox", "sim"}),
    "entry": frozenset({"core", "genesys", "servicenow", "outbox", "sim", "bridge"}),
}
ENTRY_POINTS = frozenset({"gcbridge.cli", "gcbridge.__main__"})
DEFERRED_FOR_STARTUP: Mapping[str, str] = {
    # module -> why its TYPE_CHECKING block is not hiding a cycle
    "gcbridge.bridge.cli": "BridgeConfig pulls in pydantic and the client (1-2 s here); `--help` stays fast",
}


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    line: int
    in_function: bool


def module_names(src: Path = SRC) -> dict[str, Path]:
    """Every module of the package (``.py``, and ``.pyi`` stubs of compiled modules) by dotted name."""
    found: dict[str, Path] = {}
    for path in sorted((src / ROOT).rglob("*.py*")):
        if path.suffix not in (".py", ".pyi"):
            continue
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.setdefault(".".join(parts), path)
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, known: Iterable[str]) -> None:
        self.module, self.is_package, self.known = module, is_package, set(known)
        self.edges: list[Edge] = []
        self.type_checking: list[int] = []
        self._depth = 0

    def _add(self, target: str, line: int) -> None:
        if target == ROOT or target.startswith(ROOT + "."):
            self.edges.append(Edge(self.module, target, line, self._depth > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _resolve(self.module, self.is_package, node)
        for alias in node.names:
            # `from gcbridge import _json` imports the module gcbridge._json; `from gcbridge.x import Y`
            # imports gcbridge.x (whose Y is a name)
            sub = f"{base}.{alias.name}"
            self._add(sub if sub in self.known else base, node.lineno)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
        if name == "TYPE_CHECKING":
            self.type_checking.append(node.lineno)
        self.generic_visit(node)


@dataclass(frozen=True, slots=True)
class Graph:
    edges: tuple[Edge, ...]
    type_checking: tuple[tuple[str, int], ...]


def import_graph(sources: Mapping[str, tuple[str, bool]], known: Iterable[str]) -> Graph:
    """Edges and ``if TYPE_CHECKING`` blocks of ``sources`` (module -> (source text, is a package))."""
    known = set(known)
    edges: list[Edge] = []
    blocks: list[tuple[str, int]] = []
    for module, (text, is_package) in sorted(sources.items()):
        collector = _Collector(module, is_package, known)
        collector.visit(ast.parse(text))
        edges += [e for e in collector.edges if e.target != module]
        blocks += [(module, line) for line in collector.type_checking]
    return Graph(tuple(edges), tuple(blocks))


def package_graph(src: Path = SRC) -> Graph:
    modules = module_names(src)
    sources = {
        name: (path.read_text(encoding="utf-8"), path.stem == "__init__")
        for name, path in modules.items()
        if path.suffix == ".py"
    }
    return import_graph(sources, modules)


def layer_of(module: str) -> str:
    if module in LEAF_HELPERS:
        return "leaf"
    if module in ENTRY_POINTS:
        return "entry"
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or parts[1] in ALLOWED else "leaf"


def layering_violations(graph: Graph) -> list[str]:
    out: set[str] = set()
    for edge in graph.edges:
        src_layer, dst_layer = layer_of(edge.source), layer_of(edge.target)
        if dst_layer not in (src_layer, "leaf", *ALLOWED[src_layer]):
            where = " (inside a function)" if edge.in_function else ""
            out.add(f"{edge.source}:{edge.line} imports {edge.target}{where}: {src_layer} -> {dst_layer}")
    return sorted(out)


def cycles(edges: Iterable[Edge]) -> list[list[str]]:
    """The import cycles (strongly connected components of two or more modules), each sorted."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan; the graph has a few hundred nodes, recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


# ---- the package ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> Graph:
    return package_graph()


def test_the_graph_sees_the_package(graph: Graph) -> None:
    # guards against a checker that passes because it found nothing
    sources = {e.source for e in graph.edges}
    assert {"gcbridge.bridge.service", "gcbridge.genesys.client", "gcbridge.servicenow.sinks"} <= sources
    assert any(e.target == "gcbridge._json" for e in graph.edges)


def test_each_layer_imports_only_the_layers_below_it(graph: Graph) -> None:
    assert layering_violations(graph) == []


def test_no_import_cycles(graph: Graph) -> None:
    assert cycles(graph.edges) == []


def test_no_type_checking_blocks(graph: Graph) -> None:
    blocks = [f"{m}:{line}" for m, line in graph.type_checking if m not in DEFERRED_FOR_STARTUP]
    assert blocks == []


# ---- the checker itself -----------------------------------------------------------------------------------


def _graph(**modules: str) -> Graph:
    sources = {name.replace("__", "."): (text, False) for name, text in modules.items()}
    return import_graph(sources, sources)


def test_a_cycle_hidden_in_a_function_is_still_a_cycle() -> None:
    graph = _graph(
        gcbridge__sim__a="from gcbridge.sim.b import B\n",
        gcbridge__sim__b="def later():\n    from gcbridge.sim import a\n",
    )
    assert [e.in_function for e in graph.edges] == [False, True]
    assert cycles(graph.edges) == [["gcbridge.sim.a", "gcbridge.sim.b"]]


def test_a_writer_importing_the_client_is_a_violation() -> None:
    graph = _graph(
        gcbridge__servicenow__m="from ..genesys.events import Event\nfrom gcbridge import _json\n",
        gcbridge__genesys__events="",
        gcbridge___json="",
    )
    assert layering_violations(graph) == [
        "gcbridge.servicenow.m:1 imports gcbridge.genesys.events: servicenow -> genesys"
    ]


def test_type_checking_blocks_are_found() -> None:
    graph = _graph(gcbridge__sim__c="import typing\nif typing.TYPE_CHECKING:\n    pass\n")
    assert graph.type_checking == (("gcbridge.sim.c", 2),)

"""No code in src/gcbridge reads or calls another library's private attribute (an aiohttp upgrade must not
break the client silently). Checked on the syntax tree: every ``x._name`` (and ``getattr(x, "_name")``) must
be on the project's own objects:

* ``self._name`` / ``cls._name``;
* ``Name._name`` where ``Name`` is defined at the top of the same module or imported from ``gcbridge``;
* ``anything._name`` where ``_name`` is in :data:`PROJECT_ATTRIBUTES`: attributes of the project's own
  classes, reached through another of its objects (each entry says which, and the test checks that a class of
  the project defines it).

Dunder names (``__init__``) are public protocol, not private.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "gcbridge"

# private attributes of the project's own classes, read through one of its objects other than self
PROJECT_ATTRIBUTES = {
    "_subscriptions": "genesys.auth: a TokenSubscription reads its TokenManager's list",
    "_fail": "genesys.auth: the TokenManager fails its own TokenSubscription",
    "_push": "genesys.auth: the TokenManager pushes a token to its own TokenSubscription",
    "_outbox_stats": "bridge.demo: the demo reads its own BridgeService's outbox figures",
    "_value": "secrets: Secret.__eq__ compares with another Secret",
}
_ACCESSORS = {"getattr", "setattr", "hasattr", "delattr"}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_names(tree: ast.Module) -> set[str]:
    """Names the module itself defines at the top, or imports from the project."""
    names = {"self", "cls"}
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("gcbridge")):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(
                alias.asname or alias.name.split(".")[0]
                for alias in node.names
                if alias.name.startswith("gcbridge")
            )
    return names


def foreign_private_accesses(source: str, filename: str = "<source>") -> list[str]:
    """Every private attribute access in ``source`` that the rule above does not allow, as
    ``file:line: expression``."""
    tree = ast.parse(source, filename)
    own = _own_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            target, name = node.value, node.attr
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _ACCESSORS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            target, name = node.args[0], node.args[1].value
        else:
            continue
        if not _is_private(name) or name in PROJECT_ATTRIBUTES:
            continue
        if isinstance(target, ast.Name) and target.id in own:
            continue
        found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_src_reads_no_private_attribute_of_another_library() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        found += foreign_private_accesses(path.read_text(), str(path.relative_to(SRC.parent)))
    assert found == []


@pytest.mark.parametrize(
    "line",
    [
        "sock.ws._response.close()",
        "sock.ws._reader.feed_eof()",
        "port = site._server.sockets[0].getsockname()[1]",
        "paused = x._protocol._reading_paused",
        "buffer = getattr(ws, '_reader', None)",
        "paused = getattr(reader._protocol, '_reading_paused', True)",
        "self.ws._reader.feed_eof()",
        "hasattr(self.session, '_connector')",
        "import aiohttp\nx = aiohttp._helpers",
    ],
)
def test_the_rule_catches_what_the_client_used_to_read(line: str) -> None:
    assert foreign_private_accesses(line)


@pytest.mark.parametrize(
    "source",
    [
        "class A:\n    def f(self):\n        return self._x",
        "class A:\n    @classmethod\n    def f(cls):\n        return cls._x",
        "class Machine:\n    def _on(self): ...\nTABLE = {1: Machine._on}",
        "from gcbridge.core.path import PathMachine\nx = PathMachine._ignore",
        "from .path import PathMachine\nx = PathMachine._ignore",
        "x = other._value == self._value",
        "x = obj.__class__.__name__",
    ],
)
def test_the_rule_allows_the_projects_own_objects(source: str) -> None:
    assert foreign_private_accesses(source) == []


def test_every_allowed_attribute_is_one_the_project_defines() -> None:
    defined: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                defined.add(node.name)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                defined.add(node.attr)
    assert set(PROJECT_ATTRIBUTES) <= defined

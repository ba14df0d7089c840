"""Every command's ``--help`` works and says what the command is for (in-process, no subprocess)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from gcbridge.cli import app

ENV = {"COLUMNS": "200", "TERMINAL_WIDTH": "200"}


def command_paths() -> list[list[str]]:
    """Every command and group below the root, as argument lists."""
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        for name, sub in (getattr(command, "commands", None) or {}).items():
            paths.append([*path, name])
            walk(sub, [*path, name])

    walk(root, [])
    return paths


def test_every_command_has_a_working_help_with_a_description() -> None:
    paths = command_paths()
    names = {" ".join(p) for p in paths}
    expected = {"run", "demo", "check", "status", "outbox list", "outbox replay", "config example"}
    assert expected <= names
    assert {"sim genesys", "sim servicenow", "outbox inspect", "outbox purge", "config validate"} <= names
    runner = CliRunner()
    root = typer.main.get_command(app)
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env=ENV)
        assert result.exit_code == 0, (path, result.output)
        command: Any = root
        for name in path:
            command = command.commands[name]
        assert command.help or command.short_help, f"gcbridge {' '.join(path)} has no description"
        assert "Usage: gcbridge " + " ".join(path) in " ".join(result.output.split())


def test_root_help_points_a_newcomer_at_the_demo() -> None:
    result = CliRunner().invoke(app, ["--help"], env=ENV)
    assert result.exit_code == 0
    assert "gcbridge demo" in result.output


def test_square_brackets_in_help_survive_rich_markup() -> None:
    result = CliRunner().invoke(app, ["status", "--help"], env=ENV)
    assert "config's [admin] section" in " ".join(result.output.split())


def test_a_sub_command_module_with_a_broken_import_fails_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gcbridge.cli import _import_if_present

    assert _import_if_present("gcbridge_not_installed_here") is None  # a trimmed install: skip it
    (tmp_path / "gcbridge_broken_cli.py").write_text("import a_dependency_that_is_missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="a_dependency_that_is_missing"):
        _import_if_present("gcbridge_broken_cli")

"""The ``gcbridge sim servicenow`` command's registration and option parsing (the server itself is tested
in tests/integration/test_sim_servicenow_*.py)."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from gcbridge.sim.servicenow.cli import register


def app() -> typer.Typer:
    root = typer.Typer()
    sim_app = typer.Typer()
    register(sim_app, "servicenow")
    root.add_typer(sim_app, name="sim")
    return root


def test_command_is_registered_with_its_options() -> None:
    result = CliRunner().invoke(
        app(), ["sim", "servicenow", "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"}
    )
    assert result.exit_code == 0
    for option in (
        "--user",
        "--oauth-client",
        "--rate-limit",
        "--session-queue-limit",
        "--inject",
        "--hibernate",
    ):
        assert option in result.output


def test_malformed_credentials_and_faults_are_rejected_before_starting() -> None:
    runner = CliRunner()
    bad_user = runner.invoke(app(), ["sim", "servicenow", "--user", "no-colon"])
    assert bad_user.exit_code == 2
    assert "NAME:SECRET" in bad_user.output
    bad_fault = runner.invoke(app(), ["sim", "servicenow", "--inject", "five"])
    assert bad_fault.exit_code == 2
    assert "STATUS[:COUNT]" in bad_fault.output

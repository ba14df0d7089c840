"""The ``gcbridge`` command line.

Each face of the product registers its own sub-command from its own module, so that this file stays a table
of contents: ``sim`` (the simulators), ``run``/``demo``/``check``/``status``/``outbox``/``config`` (the
service).
"""

from __future__ import annotations

import importlib
from types import ModuleType

import typer

app = typer.Typer(
    name="gcbridge",
    help="Genesys Cloud notification events into ServiceNow: durable, in order per conversation, and every "
    "possible loss reported as a gap.",
    epilog="New here? `gcbridge demo` runs the whole flow on this machine, no credentials needed. "
    "`gcbridge COMMAND --help` explains each command.",
    no_args_is_help=True,
    add_completion=False,
)
sim_app = typer.Typer(
    help="Run a local simulator of Genesys Cloud or ServiceNow (for tests and demos).", no_args_is_help=True
)
app.add_typer(sim_app, name="sim")

# The module of each sub-command group. A trimmed-down install may leave one out; anything else that fails to
# import (a missing dependency inside it) must fail loudly instead of making the command silently disappear.
_SIM_COMMANDS = {
    "genesys": "gcbridge.sim.genesys.cli",
    "servicenow": "gcbridge.sim.servicenow.cli",
}


def _register() -> None:
    for name, module_name in _SIM_COMMANDS.items():
        module = _import_if_present(module_name)
        if module is not None:
            module.register(sim_app, name)
    service_cli = _import_if_present("gcbridge.bridge.cli")
    if service_cli is not None:
        service_cli.register(app)


def _import_if_present(module_name: str) -> ModuleType | None:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise


_register()


def main() -> None:
    app()

"""The ``gcbridge`` command line.

Each face of the product registers its own sub-command from its own module, so that this file stays a table
of contents: ``sim`` (the simulators), ``run``/``demo``/``check``/``status``/``outbox``/``config`` (the
service).
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="gcbridge",
    help="Genesys Cloud notifications into ServiceNow, without gaps or losses.",
    no_args_is_help=True,
    add_completion=False,
)
sim_app = typer.Typer(
    help="Run a local simulator of Genesys Cloud or ServiceNow (for tests and demos).", no_args_is_help=True
)
app.add_typer(sim_app, name="sim")

# (module, attribute, registration) for each sub-command group. A module that is missing or broken is
# reported by name instead of taking the whole CLI down.
_SIM_COMMANDS = {
    "genesys": "gcbridge.sim.genesys.cli",
    "servicenow": "gcbridge.sim.servicenow.cli",
}


def _register() -> None:
    for name, module_name in _SIM_COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        module.register(sim_app, name)
    try:
        service_cli = importlib.import_module("gcbridge.bridge.cli")
    except ModuleNotFoundError:
        return
    service_cli.register(app)


_register()


def main() -> None:
    app()

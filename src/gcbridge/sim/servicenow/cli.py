"""``gcbridge sim servicenow``: run the ServiceNow simulator until Ctrl-C (SIGINT) or SIGTERM.

A second Ctrl-C while stopping skips the orderly close of open connections; either way the exit code is 0."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import typer
from rich.console import Console

from gcbridge.stopsignals import StopSignals

from .config import SnSimConfig
from .sim import ServiceNowSim


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values or []:
        name, sep, secret = value.partition(":")
        if not sep or not name:
            raise typer.BadParameter(f"{what} must look like NAME:SECRET, got {value!r}")
        pairs[name] = secret
    return pairs


def _injections(values: list[str] | None) -> list[tuple[int, int]]:
    parsed = []
    for value in values or []:
        status, _, count = value.partition(":")
        try:
            parsed.append((int(status), int(count or "1")))
        except ValueError:
            raise typer.BadParameter(f"--inject must look like STATUS[:COUNT], got {value!r}") from None
    return parsed


def servicenow(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8090,
    user: Annotated[
        list[str] | None,
        typer.Option(help="Basic-auth user NAME:PASSWORD (repeatable). Default admin:admin."),
    ] = None,
    oauth_client: Annotated[
        list[str] | None, typer.Option(help="OAuth client ID:SECRET for /oauth_token.do (repeatable).")
    ] = None,
    client_credentials: Annotated[
        bool, typer.Option(help="Enable the client_credentials grant (off by default, as on an instance).")
    ] = False,
    access_token_ttl: Annotated[float, typer.Option(help="Access token lifetime, seconds.")] = 1800.0,
    rate_limit: Annotated[
        int | None, typer.Option(help="Requests per user per hour for every API (default: no rule).")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Requests processed at once.")] = 16,
    queue: Annotated[int, typer.Option(help="Requests that may wait for a slot; more get 429.")] = 64,
    session_queue_limit: Annotated[
        int, typer.Option(help="Requests queued on one JSESSIONID before 202-and-drop.")
    ] = 10,
    delay: Annotated[float, typer.Option(help="Seconds every API request is held before processing.")] = 0.0,
    inject: Annotated[
        list[str] | None, typer.Option(help="Answer the next COUNT API requests with STATUS (500|502|503).")
    ] = None,
    hibernate: Annotated[
        bool, typer.Option(help="Start hibernating (every request gets the HTML page).")
    ] = False,
    strict_columns: Annotated[
        bool, typer.Option(help="Drop writes to columns a table does not have, as an instance does.")
    ] = False,
) -> None:
    """Run a simulated ServiceNow instance (Table, Import Set, Event Management APIs) until Ctrl-C."""
    users = _pairs(user, "--user") or {"admin": "admin"}
    config = SnSimConfig(
        users=users,
        oauth_clients=_pairs(oauth_client, "--oauth-client"),
        client_credentials_enabled=client_credentials,
        access_token_ttl=access_token_ttl,
        rate_limit_per_hour=rate_limit,
        concurrency=concurrency,
        queue=queue,
        session_queue_limit=session_queue_limit,
        strict_columns=strict_columns,
    )
    faults = _injections(inject)
    console = Console()

    async def serve() -> None:
        sim = ServiceNowSim(config)
        for status, count in faults:
            sim.inject(status, count)
        sim.set_delay(delay)
        sim.hibernate(hibernate)
        with StopSignals() as signals:
            base_url = await sim.start(host, port)
            try:
                _print_banner(console, sim, base_url)
                await signals.stop.wait()
            finally:
                await signals.unless_hurried(sim.stop())

    # Stop signals are handled inside the loop; this covers only the instants before and after it runs.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


def _print_banner(console: Console, sim: ServiceNowSim, base_url: str) -> None:
    console.print(f"[bold]ServiceNow simulator[/] listening on [cyan]{base_url}[/]")
    for name, password in sim.config.users.items():
        console.print(f"  basic auth user   {name} / {password}")
    for client_id, secret in sim.config.oauth_clients.items():
        console.print(f"  oauth client      {client_id} / {secret}  (POST {base_url}/oauth_token.do)")
    console.print(f"  tables            {', '.join(sim.state.store.table_names())}")
    console.print(f"  staging tables    {', '.join(sorted(sim.state.transform_maps))}")
    console.print(f"  controls          {base_url}/_sim/state  (see docs/simulator-servicenow.md)")
    console.print("Press Ctrl-C to stop.")


def register(parent_app: typer.Typer, name: str) -> None:
    """Add the ``servicenow`` command to the ``gcbridge sim`` group."""
    parent_app.command(name)(servicenow)

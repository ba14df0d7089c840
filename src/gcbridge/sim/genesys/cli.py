"""``gcbridge sim genesys``: run the Genesys Cloud simulator until Ctrl-C (SIGINT) or SIGTERM.

A second Ctrl-C while stopping skips the orderly close of open sockets; either way the exit code is 0."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Annotated, Any

import typer

from gcbridge.sim.genesys.config import SimConfig
from gcbridge.sim.genesys.org import OrgSettings
from gcbridge.sim.genesys.sim import GenesysSim
from gcbridge.stopsignals import StopSignals


def register(parent_app: typer.Typer, name: str) -> None:
    """Add the ``genesys`` command to the ``gcbridge sim`` group."""
    parent_app.command(name, help="Run a local Genesys Cloud org (OAuth, Notification API, WebSockets).")(run)


def run(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 8765,
    client_id: Annotated[str, typer.Option(help="OAuth client id accepted by /oauth/token.")] = "sim-client",
    client_secret: Annotated[str, typer.Option(help="Its secret.")] = "sim-secret",  # noqa: S107 (demo value)
    extra_client: Annotated[
        list[str] | None, typer.Option(help="Another OAuth client as id:secret (repeatable).")
    ] = None,
    token_ttl: Annotated[float, typer.Option(help="Access token lifetime, simulated seconds.")] = 86399.0,
    channel_ttl: Annotated[float, typer.Option(help="Channel lifetime, simulated seconds.")] = 86400.0,
    heartbeat: Annotated[float, typer.Option(help="Heartbeat interval, simulated seconds.")] = 30.0,
    time_scale: Annotated[float, typer.Option(help="Divides every simulated duration.")] = 1.0,
    traffic: Annotated[float, typer.Option(help="Events per second on subscribed topics (0: none).")] = 0.0,
    exclusive_topics: Annotated[
        bool, typer.Option(help="Newest channel of an OAuth client takes a topic from older ones.")
    ] = False,
    channel_survives_token: Annotated[
        bool, typer.Option(help="Channels outlive the token that created them.")
    ] = False,
    missing_channel_ws: Annotated[
        str, typer.Option(help="Unknown channel on the socket: '404' (HTTP) or 'message'.")
    ] = "404",
    api_rate_limit: Annotated[int, typer.Option(help="API requests per token per minute (0: none).")] = 300,
    token_rate_limit: Annotated[int, typer.Option(help="Tokens per client per minute (0: none).")] = 0,
    max_frame_size: Annotated[int, typer.Option(help="Larger messages are sent in fragments.")] = 16_384,
    forbid: Annotated[
        list[str] | None, typer.Option(help="fnmatch pattern of topics to deny (repeatable).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the event body generator.")] = None,
    org: Annotated[
        bool,
        typer.Option(help="Run a simulated org: users, queues, conversations, and the back-fill REST API."),
    ] = False,
    org_seed: Annotated[int, typer.Option(help="Seed of the simulated org.")] = 1,
    org_users: Annotated[int, typer.Option(help="Agents in the simulated org.")] = 12,
    org_queues: Annotated[int, typer.Option(help="Queues in the simulated org.")] = 3,
    org_calls_per_hour: Annotated[float, typer.Option(help="Inbound calls per simulated hour.")] = 60.0,
    org_time_scale: Annotated[
        float, typer.Option(help="Simulated seconds of the org per real second (0: stopped).")
    ] = 1.0,
    org_start: Annotated[
        float | None,
        typer.Option(help="Epoch seconds of the org's start (default: now); fixed, the same world again."),
    ] = None,
    org_setting: Annotated[
        list[str] | None,
        typer.Option(help="Any other org setting as NAME=VALUE, e.g. mean_talk=20 (repeatable)."),
    ] = None,
) -> None:
    if missing_channel_ws not in ("404", "message"):
        raise typer.BadParameter("--missing-channel-ws must be '404' or 'message'")
    if org and traffic > 0:
        # Random bodies on the org's own topics would contradict its REST answers.
        raise typer.BadParameter("--traffic and --org exclude each other: the org publishes its own events")
    try:
        org_settings = (
            OrgSettings(
                seed=org_seed,
                users=org_users,
                queues=org_queues,
                calls_per_hour=org_calls_per_hour,
                time_scale=org_time_scale,
                start=org_start,
                **org_overrides(org_setting or []),
            )
            if org
            else None
        )
        config = SimConfig(
            token_ttl=token_ttl,
            channel_ttl=channel_ttl,
            heartbeat_interval=heartbeat,
            time_scale=time_scale,
            exclusive_topics=exclusive_topics,
            channel_dies_with_token=not channel_survives_token,
            missing_channel_ws="message" if missing_channel_ws == "message" else "404",
            api_rate_limit_per_min=api_rate_limit or None,
            token_rate_limit_per_min=token_rate_limit or None,
            max_frame_size=max_frame_size,
            client_id=client_id,
            client_secret=client_secret,
            seed=seed,
            org=org_settings,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    extra: list[tuple[str, str]] = []
    for spec in extra_client or []:
        cid, sep, secret = spec.partition(":")
        if not sep or not cid or not secret:
            raise typer.BadParameter(f"--extra-client must be id:secret, got {spec!r}")
        extra.append((cid, secret))
    # Stop signals are handled inside the loop; this covers only the instants before and after it runs.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config, host, port, extra, traffic, forbid or []))


#: OrgSettings fields that have an option of their own (``--org-seed``, ...), not ``--org-setting``.
_ORG_OPTIONS = ("seed", "users", "queues", "calls_per_hour", "time_scale", "start")


def org_overrides(specs: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs as :class:`OrgSettings` fields, each value converted to its field's type."""
    kinds = {f.name: str(f.type) for f in dataclasses.fields(OrgSettings) if f.name not in _ORG_OPTIONS}
    out: dict[str, Any] = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in kinds:
            names = ", ".join(kinds)
            raise ValueError(f"--org-setting must be NAME=VALUE with NAME one of {names}; got {spec!r}")
        convert = int if kinds[name] == "int" else float
        try:
            out[name] = convert(text)
        except ValueError:
            raise ValueError(f"--org-setting {name} needs a number, got {text!r}") from None
    return out


async def _serve(
    config: SimConfig, host: str, port: int, extra: list[tuple[str, str]], traffic: float, forbid: list[str]
) -> None:
    sim = GenesysSim(config)
    for cid, secret in extra:
        sim.add_oauth_client(cid, secret)
    for pattern in forbid:
        sim.forbid_topic(pattern)
    with StopSignals() as signals:
        base_url = await sim.start(host, port)
        try:
            if traffic > 0:
                sim.start_traffic(traffic)
            typer.echo(f"Genesys Cloud simulator listening on {base_url}")
            typer.echo(f"  API and token endpoint: {base_url}  (POST {base_url}/oauth/token)")
            typer.echo(f"  client id: {config.client_id}   client secret: {config.client_secret}")
            for cid, secret in extra:
                typer.echo(f"  client id: {cid}   client secret: {secret}")
            typer.echo(f"  fault controls: {base_url}/_sim/   (Ctrl-C to stop)")
            await signals.stop.wait()
        finally:
            await signals.unless_hurried(sim.stop())

"""``gcbridge run`` as a real subprocess, as the service end-to-end tests configure, start, watch and stop
it (the process itself: :class:`gcbridge.sim.processes.ServiceProcess`), and the two simulators it runs
against, in the test's own process (their ledgers and fault switches at hand)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from gcbridge.sim.genesys.config import SimConfig
from gcbridge.sim.genesys.org import OrgSettings
from gcbridge.sim.genesys.sim import GenesysSim
from gcbridge.sim.processes import ServiceProcess
from gcbridge.sim.servicenow.config import SnSimConfig
from gcbridge.sim.servicenow.sim import ServiceNowSim

from .conftest import GENESYS_SECRET, SN_PASSWORD, SN_USER

GENESYS_CLIENT = "gcbridge-e2e"  # the OAuth client of the services the end-to-end tests start


def write_service_config(
    directory: Path,
    genesys_url: str,
    client_id: str,
    topics: list[str],
    sn_url: str,
    *,
    admin_port: int = 0,
    outbox_url: str | None = None,
    log_level: str = "debug",
    extra: str = "",
) -> Path:
    """``directory/gcbridge.toml`` for a service between two simulators (the ServiceNow password in a file
    beside it, the Genesys secret from the environment :class:`Bridge` sets), quick delivery retries, a
    20 s drain; ``extra`` is TOML appended (more sections). The outbox is SQLite in ``state/`` unless
    ``outbox_url`` names a PostgreSQL database. The admin endpoint takes any free port unless
    ``admin_port`` is given."""
    (directory / "sn_password").write_text(SN_PASSWORD + "\n")
    path = directory / "gcbridge.toml"
    listed = ", ".join(f'"{t}"' for t in topics)
    outbox = f'url = "{outbox_url}"' if outbox_url else 'path = "state/outbox.db"'
    path.write_text(f"""
[genesys]
base_url = "{genesys_url}"
client_id = "{client_id}"
topics = [{listed}]

[servicenow]
instance_url = "{sn_url}"
[servicenow.auth]
kind = "basic"
username = "{SN_USER}"
password_file = "sn_password"

[outbox]
{outbox}
drain_timeout = 20.0
[outbox.dispatcher]
backoff_initial = 0.1
backoff_max = 1.0
idle_poll = 1.0

[admin]
port = {admin_port}

[logging]
level = "{log_level}"
{extra}""")
    return path


class Bridge(ServiceProcess):
    """``gcbridge run`` as the end-to-end tests start it: the Genesys secret in its environment (the config
    files name only the client id), the rest as :class:`ServiceProcess` does."""

    def __init__(self, config: Path, log: Path, *, ignore_sigint: bool = False) -> None:
        super().__init__(
            config, log, env={"GCBRIDGE_GENESYS__CLIENT_SECRET": GENESYS_SECRET}, ignore_sigint=ignore_sigint
        )


@asynccontextmanager
async def started_sims(
    seed: int, *, clients: Sequence[str] = (GENESYS_CLIENT,), org: OrgSettings | None = None
) -> AsyncIterator[tuple[GenesysSim, ServiceNowSim]]:
    """Both simulators in this process on 127.0.0.1, port 0: Genesys (``seed``, heartbeats every 5 s, an
    org world when ``org`` is given) with ``clients`` as OAuth clients sharing the test secret, ServiceNow
    with the test user. Traffic is stopped and both are stopped on exit."""
    gsim = GenesysSim(SimConfig(seed=seed, heartbeat_interval=5.0, org=org))
    for client in clients:
        gsim.add_oauth_client(client, GENESYS_SECRET)
    snsim = ServiceNowSim(SnSimConfig(users={SN_USER: SN_PASSWORD}))
    await gsim.start("127.0.0.1", 0)
    await snsim.start("127.0.0.1", 0)
    try:
        yield gsim, snsim
    finally:
        await gsim.stop_traffic()
        await gsim.stop()
        await snsim.stop()

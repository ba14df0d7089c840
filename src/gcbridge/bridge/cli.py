"""The service's commands: ``run``, ``demo``, ``check``, ``status``, ``outbox ...``, ``config ...``.

Exit codes: 0 success, 1 a failed run or check, 2 an unusable configuration or command line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from gcbridge import _json

if TYPE_CHECKING:
    from gcbridge.bridge.config import BridgeConfig
    from gcbridge.bridge.service import BridgeService

T = TypeVar("T")

EXIT_CONFIG = 2
DEFAULT_CONFIG = "gcbridge.toml"

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="GCBRIDGE_CONFIG",
        show_envvar=True,
        help="The TOML configuration file (see `gcbridge config example`).",
    ),
]

outbox_app = typer.Typer(
    help="Look at the outbox and its dead letters; replay or purge them. The outbox file belongs to one "
    "process at a time: while the service runs, these commands go through its admin endpoint (on this "
    "host), so the service need not stop.",
    no_args_is_help=True,
)
config_app = typer.Typer(
    help="Print an example configuration, or validate and show one.", no_args_is_help=True
)

_err = Console(stderr=True, highlight=False)
_out = Console(highlight=False)


def register(app: typer.Typer) -> None:
    """Add the service's commands to the root ``gcbridge`` application."""
    app.command(
        "run",
        help="Run the bridge service (Genesys Cloud -> outbox -> ServiceNow) until SIGTERM or Ctrl-C, which "
        "drain it; SIGHUP re-reads the topic list.",
    )(run)
    app.command(
        "demo", help="Run the whole flow on this machine: both simulators, live view, no credentials."
    )(demo)
    app.command(
        "check",
        help="Validate the configuration, then try its credentials, channel, topic "
        "permissions and ServiceNow tables against the configured endpoints.",
    )(check)
    app.command(
        "status",
        help="Show the state of a running service (asks its admin endpoint); exits 1 when it is not ready.",
    )(status)
    app.command(
        "backfill",
        help="Repair an interval by hand: read the state of what the topics cover (conversations, presence, "
        "routing status, queue observations) from the Genesys Cloud REST APIs and put it into the outbox as "
        "events, like the jobs the service runs for every gap. A back-filled state never overwrites a newer "
        "live one. While the service runs (it holds the outbox), the job runs in the service, through its "
        "admin endpoint on this host; otherwise here, and the service delivers the events when it runs. "
        "Exits 0 when everything was repaired, 1 when some topics could not be (the reasons are printed).",
    )(backfill)
    app.add_typer(outbox_app, name="outbox")
    app.add_typer(config_app, name="config")


def _load(config: Path) -> BridgeConfig:
    from gcbridge.bridge.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        raise typer.Exit(EXIT_CONFIG) from None


# -- run ---------------------------------------------------------------------------------------------------


def run(config: ConfigOption = Path(DEFAULT_CONFIG)) -> None:
    from gcbridge.bridge import logging as bridge_logging
    from gcbridge.bridge.outbox_location import outbox_location_problem
    from gcbridge.bridge.service import BridgeService

    cfg = _load(config)
    problem = outbox_location_problem(cfg.outbox.path, create=True)
    if problem is not None:
        sys.stderr.write(f"{config}: {problem}\n")
        raise typer.Exit(EXIT_CONFIG)
    bridge_logging.configure(level=cfg.logging.level, fmt=cfg.logging.format)
    service = BridgeService(cfg, config_path=config)
    raise typer.Exit(asyncio.run(run_service(service)))


AUX_THREADS = 4
"""The loop's default executor under ``gcbridge run``: DNS lookups, opening and closing the outbox."""


async def run_service(service: BridgeService) -> int:
    """Run ``service`` to its exit code on the running loop, whose default executor it bounds first."""
    # asyncio's own default pool would grow to min(32, cpus + 4) unnamed threads and keep them: a bounded
    # pool of named ones keeps the process's thread count flat and says on the status page whose they are
    executor = ThreadPoolExecutor(max_workers=AUX_THREADS, thread_name_prefix="gcbridge-aux")
    asyncio.get_running_loop().set_default_executor(executor)
    return await service.run()


# -- demo --------------------------------------------------------------------------------------------------


def demo(
    duration: Annotated[
        float | None,
        typer.Option(help="Seconds to run; default: until Ctrl-C on a terminal, 30 s otherwise."),
    ] = None,
    rate: Annotated[float, typer.Option(help="Events per second the simulated org publishes.")] = 50.0,
    faults: Annotated[
        bool,
        typer.Option(
            help="Inject a socket_closing, an abrupt drop and a ServiceNow 503 burst along the way."
        ),
    ] = True,
    admin_port: Annotated[int, typer.Option(help="Port of the status page (0: any free port).")] = 0,
    keep: Annotated[
        Path | None,
        typer.Option(
            help="Keep the outbox, gap journal and log in this directory instead of a temporary one."
        ),
    ] = None,
) -> None:
    from gcbridge.bridge.demo import DemoOptions, run_demo

    interactive = sys.stdout.isatty()
    if duration is None and not interactive:
        duration = 30.0
    options = DemoOptions(
        duration=duration, rate=rate, faults=faults, admin_port=admin_port, keep=keep, interactive=interactive
    )
    # Without a terminal (CI, a pipe) lines must not wrap at rich's default 80 columns.
    console = _out if interactive else Console(highlight=False, width=120)
    ok = asyncio.run(run_demo(options, console))
    raise typer.Exit(0 if ok else 1)


# -- check -------------------------------------------------------------------------------------------------


def check(
    config: ConfigOption = Path(DEFAULT_CONFIG),
    skip_topics: Annotated[
        bool,
        typer.Option(
            help="Do not subscribe the topics on a test channel (use on a "
            "live system whose topics are exclusive)."
        ),
    ] = False,
    skip_servicenow: Annotated[bool, typer.Option(help="Only check Genesys Cloud.")] = False,
) -> None:
    from gcbridge.bridge.check import Verdict, check_genesys, check_outbox, check_servicenow

    cfg = _load(config)
    _out.print(f"[green]ok[/]    configuration     {config} is valid")

    async def all_checks() -> list[Verdict]:
        verdicts = [check_outbox(cfg)]
        verdicts += await check_genesys(cfg, topics=not skip_topics)
        if not skip_servicenow:
            verdicts += await check_servicenow(cfg)
        return verdicts

    verdicts = asyncio.run(all_checks())
    colours = {"ok": "green", "warn": "yellow", "fail": "red"}
    for v in verdicts:
        _out.print(f"[{colours[v.level]}]{v.level:<5}[/] {v.name:<17} ", end="")
        _out.print(v.detail, markup=False, soft_wrap=True)  # one line per verdict, for grep and logs
    failed = [v for v in verdicts if v.level == "fail"]
    _out.print(f"\n{len(verdicts) + 1 - len(failed)} passed, {len(failed)} failed")
    raise typer.Exit(1 if failed else 0)


# -- status ------------------------------------------------------------------------------------------------


def status(
    url: Annotated[
        str | None,
        typer.Option(
            help="Admin endpoint, e.g. http://127.0.0.1:9464 (default: host and port of the config's "
            "\\[admin] section, or 127.0.0.1:9464 without a config file)."
        ),
    ] = None,
    config: ConfigOption = Path(DEFAULT_CONFIG),
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw /status document.")] = False,
) -> None:
    import aiohttp

    if url is None and not config.exists():
        from gcbridge.bridge.config import DEFAULT_ADMIN_PORT

        url = f"http://127.0.0.1:{DEFAULT_ADMIN_PORT}"
    elif url is None:
        url = _admin_url(_load(config))

    async def fetch() -> Any:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.get(f"{url.rstrip('/')}/status") as r,
        ):
            return await r.json()

    try:
        doc = asyncio.run(fetch())
    except Exception as exc:
        _err.print(f"cannot reach the service at {url}: {type(exc).__name__} {exc}", markup=False)
        raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(_json.dumps_str(doc) + "\n")
        return
    _print_status(doc)
    raise typer.Exit(0 if doc.get("readiness", {}).get("ready") else 1)


def _print_status(doc: dict[str, Any]) -> None:
    ready = doc.get("readiness", {})
    _out.print(
        f"state [bold]{doc.get('state')}[/]  ready [bold]{ready.get('ready')}[/]  "
        f"uptime {doc.get('uptime', 0):.0f} s  version {doc.get('version')}"
    )
    for reason in ready.get("reasons", []):
        _out.print(f"  [yellow]not ready:[/] {reason}")
    g = doc.get("genesys", {})
    table = Table("shard", "channel", "state", "topics", "last frame")
    now = doc.get("now") or time.time()
    for c in g.get("channels", []):
        last = c.get("last_frame_at")
        table.add_row(
            str(c.get("shard")),
            str(c.get("id")),
            str(c.get("state")),
            str(c.get("topics")),
            f"{now - last:.1f} s ago" if isinstance(last, int | float) else "-",
        )
    _out.print(table)
    ev, o, d, gaps = (
        doc.get("events", {}),
        doc.get("outbox", {}),
        doc.get("deliveries", {}),
        doc.get("gaps", {}),
    )
    _out.print(
        f"events in {ev.get('received', 0)}   delivered {d.get('delivered', 0)}   retries "
        f"{d.get('retry', 0)}   rejected {d.get('rejected', 0)}"
    )
    _out.print(
        f"outbox pending {o.get('pending', 0)}   in flight {o.get('in_flight', 0)}   dead "
        f"{o.get('dead', 0)}   oldest {o.get('oldest_pending_age', 0):.1f} s"
    )
    _out.print(
        f"gaps {gaps.get('count', 0)} ({gaps.get('seconds', 0)} s)   ServiceNow reachable "
        f"{doc.get('servicenow', {}).get('reachable')}"
    )
    jobs = (doc.get("backfill") or {}).get("jobs") or {}
    if jobs:
        _out.print(
            f"back-fill jobs waiting {jobs.get('pending', 0) + jobs.get('running', 0)}   done "
            f"{jobs.get('done', 0)}   partial {jobs.get('partial', 0)}   failed {jobs.get('failed', 0)}"
        )

    ha = doc.get("ha")
    if isinstance(ha, dict):
        _out.print(ha_text(ha))


def ha_text(ha: dict[str, Any]) -> str:
    """The ``ha`` part of /status as a few lines (several instances sharing one outbox)."""
    owned = ", ".join(f"{s}@{e}" for s, e in ha.get("owned", {}).items()) or "none"
    lines = [f"instance {ha.get('instance_id')} ({ha.get('role')})   owns shard@epoch: {owned}"]
    for m in ha.get("instances", []):
        lines.append(
            f"  instance {m.get('id')}  {m.get('state')}  heartbeat {m.get('heartbeat_age')} s ago  "
            f"channels {m.get('channels_in_use')}/{m.get('channel_budget')}  shards {m.get('shards')}"
        )
    for sh in ha.get("shards", []):
        lines.append(
            f"  shard {sh.get('shard')}: owner {sh.get('owner') or '-'}  epoch {sh.get('epoch')}  "
            f"expires in {sh.get('expires_in')} s"
        )
    for p in ha.get("standby_paths", []):
        state = "live" if p.get("live") else "silent"
        lines.append(f"  standby {p.get('instance')}: {state}, last frame {p.get('seen')}")
    for f in ha.get("failovers", [])[:5]:
        gap = f.get("gap_seconds")
        lines.append(
            f"  failover at {f.get('at')}: shard {f.get('shard')} from {f.get('previous_owner')} "
            f"(epoch {f.get('epoch')}), gap {'none' if gap is None else f'{gap:.1f} s'}"
        )
    return "\n".join(lines)


# -- outbox ------------------------------------------------------------------------------------------------


def _admin_url(cfg: BridgeConfig) -> str:
    """Where this host reaches the service's admin endpoint (its wildcard addresses mean loopback)."""
    host = "127.0.0.1" if cfg.admin.host in ("0.0.0.0", "::", "") else cfg.admin.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{cfg.admin.port}"


class _ServiceAnswer(Exception):
    """The running service's admin endpoint refused a request; the message is its own."""


class _Service:
    """The running service's admin endpoint, for the outbox commands while it holds the outbox."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    async def call(
        self, method: str, path: str, body: Any = None, *, missing_ok: bool = False, wait: float = 30.0
    ) -> Any:
        """The JSON answer; None for a 404 when ``missing_ok``; :class:`_ServiceAnswer` for other errors."""
        import aiohttp

        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=wait)) as http,
            http.request(method, self.url + path, json=body) as r,
        ):
            text = await r.text()
            if r.status == 404 and missing_ok:
                return None
            try:
                doc = _json.loads(text)
            except _json.JSONDecodeError:
                doc = None
            if r.status >= 300:
                message = doc.get("error") if isinstance(doc, dict) else None
                raise _ServiceAnswer(f"the service answered HTTP {r.status}: {message or text[:200]}")
            return doc


def _with_outbox(
    config: Path,
    action: Callable[[Any], Awaitable[T]],
    through_service: Callable[[_Service], Coroutine[Any, Any, T]],
) -> tuple[T, bool]:
    """``action(store)`` on the configured outbox, opened and closed here; while a running service holds
    it, ``through_service(service)`` asks the service's admin endpoint instead. Returns the result and
    whether the service did it."""
    import aiohttp

    from gcbridge.outbox.sqlite import OutboxLockedError, SqliteOutbox

    cfg = _load(config)
    if not cfg.outbox.path.exists():
        _err.print(f"no outbox at {cfg.outbox.path}", markup=False)
        raise typer.Exit(1)

    async def go() -> T:
        store = await SqliteOutbox.open(cfg.outbox.path, retention=cfg.outbox.retention_days * 86400.0)
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(go()), False
    except OutboxLockedError:
        pass
    if not cfg.admin.enabled:
        _err.print(
            "the outbox is in use by a running service whose admin endpoint is off ([admin] enabled = "
            "false): stop the service first (systemctl stop gcbridge)",
            markup=False,
        )
        raise typer.Exit(1)
    url = _admin_url(cfg)
    try:
        return asyncio.run(through_service(_Service(url))), True
    except _ServiceAnswer as exc:
        _err.print(str(exc), markup=False)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        _err.print(
            f"the outbox is in use by a running service, and its admin endpoint at {url} did not answer "
            f"({type(exc).__name__}: {exc}); stop the service first, or check [admin]",
            markup=False,
        )
    raise typer.Exit(1)


@outbox_app.command("list", help="List dead letters (rows ServiceNow refused or that ran out of attempts).")
def outbox_list(
    config: ConfigOption = Path(DEFAULT_CONFIG),
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Most rows to show.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Rows to skip.")] = 0,
) -> None:
    from dataclasses import asdict

    from gcbridge.outbox.documents import row_document

    async def action(store: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        rows = await store.dead_letters(limit=limit, offset=offset)
        return [row_document(r, payload=False) for r in rows], asdict(await store.stats(time.time()))

    async def through_service(service: _Service) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        doc = await service.call("GET", f"/outbox/dead?limit={limit}&offset={offset}")
        return doc["rows"], doc["stats"]

    (rows, stats), _ = _with_outbox(config, action, through_service)
    table = Table("id", "topic", "order key", "attempts", "failed at", "reason")
    for r in rows:
        done = r.get("finished_at")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(done)) if done else "-"
        table.add_row(
            str(r["id"]), r["topic"], r["order_key"], str(r["attempts"]), when, (r["last_error"] or "")[:120]
        )
    _out.print(table)
    _out.print(
        f"dead {stats['dead']}   pending {stats['pending']}   in flight {stats['in_flight']}   "
        f"delivered (retained) {stats['delivered']}"
    )


@outbox_app.command("inspect", help="Show one row in full: state, attempts, last error and its payload.")
def outbox_inspect(
    row_id: Annotated[int, typer.Argument(help="Row id (see `gcbridge outbox list`).")],
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    from gcbridge.outbox.documents import row_document

    async def action(store: Any) -> dict[str, Any] | None:
        info = await store.inspect(row_id)
        return None if info is None else row_document(info)

    async def through_service(service: _Service) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await service.call("GET", f"/outbox/rows/{row_id}", missing_ok=True)
        return doc

    doc, _ = _with_outbox(config, action, through_service)
    if doc is None:
        _err.print(f"no row {row_id} (never stored, expired or purged)")
        raise typer.Exit(1)
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def _selection(ids: list[int] | None, all_rows: bool) -> Any:
    from gcbridge.outbox.base import ALL

    if all_rows == bool(ids):
        _err.print("give row ids or --all (one of them)")
        raise typer.Exit(EXIT_CONFIG)
    return ALL if all_rows else ids


@outbox_app.command(
    "replay",
    help="Send dead letters again (after fixing their cause): back to pending, "
    "attempts reset, in their original order.",
)
def outbox_replay(
    ids: Annotated[list[int] | None, typer.Argument(help="Row ids to replay.")] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    from gcbridge.outbox.documents import selection_document

    selection = _selection(ids, all_rows)

    async def action(store: Any) -> int:
        return int(await store.replay(selection, time.time()))

    async def through_service(service: _Service) -> int:
        return int((await service.call("POST", "/outbox/replay", selection_document(selection)))["replayed"])

    replayed, by_service = _with_outbox(config, action, through_service)
    when = (
        "the running service is delivering them"
        if by_service
        else "the service delivers them at its next start"
    )
    _out.print(f"replayed {replayed} rows; {when}")
    _missed(ids, replayed)


@outbox_app.command("purge", help="Delete dead letters for good (their events will not be delivered).")
def outbox_purge(
    ids: Annotated[list[int] | None, typer.Argument(help="Row ids to delete.")] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="Delete every dead letter.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    from gcbridge.outbox.documents import selection_document

    selection = _selection(ids, all_rows)
    if not yes and not typer.confirm("Delete these dead letters for good?"):
        raise typer.Exit(1)

    async def action(store: Any) -> int:
        return int(await store.purge(selection))

    async def through_service(service: _Service) -> int:
        return int((await service.call("POST", "/outbox/purge", selection_document(selection)))["purged"])

    purged, _ = _with_outbox(config, action, through_service)
    _out.print(f"purged {purged} rows")
    _missed(ids, purged)


def _missed(ids: list[int] | None, done: int) -> None:
    """Exit 1 when some of the given ids were not dead letters (a typo, or already replayed or purged)."""
    if ids and done < len(set(ids)):
        _err.print(
            f"{len(set(ids)) - done} of the given ids are not dead letters (see `gcbridge outbox list`)",
            markup=False,
        )
        raise typer.Exit(1)


# -- backfill ----------------------------------------------------------------------------------------------

BACKFILL_TIMEOUT = 3600.0
"""Seconds ``gcbridge backfill`` waits for the running service's job (a large interval under a tight rate
limit takes minutes)."""


def backfill(
    start: Annotated[
        str,
        typer.Option(
            "--from", help="Start of the interval, ISO-8601 (2026-12-04T10:00:00Z; UTC if no zone)."
        ),
    ],
    end: Annotated[str, typer.Option("--to", help="End of the interval, ISO-8601.")],
    topic: Annotated[
        list[str] | None,
        typer.Option(
            "--topic", help="A topic to repair (repeat it); default: every topic of the configuration."
        ),
    ] = None,
    config: ConfigOption = Path(DEFAULT_CONFIG),
) -> None:
    import aiohttp

    from gcbridge.bridge.backfill_cli import exit_code, outcome_lines, parse_when, run_here
    from gcbridge.outbox.sqlite import OutboxLockedError

    try:
        start_at, end_at = parse_when(start, "--from"), parse_when(end, "--to")
    except ValueError as exc:
        _err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_CONFIG) from None
    if end_at <= start_at:
        _err.print("--to must be after --from", markup=False)
        raise typer.Exit(EXIT_CONFIG)
    cfg = _load(config)
    body = {"from": start_at, "to": end_at, "topics": topic or None}

    async def through_service() -> Any:
        answer = await _Service(_admin_url(cfg)).call("POST", "/backfill", body, wait=BACKFILL_TIMEOUT)
        return answer["job"]

    doc: Any = None
    by_service = False
    if cfg.outbox.url is not None and cfg.admin.enabled:
        # PostgreSQL has no file lock to tell that the service runs: ask its admin endpoint first
        try:
            doc, by_service = asyncio.run(through_service()), True
        except _ServiceAnswer as exc:
            _err.print(str(exc), markup=False)
            raise typer.Exit(1) from None
        except (aiohttp.ClientError, OSError, TimeoutError):
            doc = None
    if doc is None:
        try:
            doc = asyncio.run(run_here(cfg, start_at, end_at, topic))
        except OutboxLockedError:
            if not cfg.admin.enabled:
                _err.print(
                    "the outbox is in use by a running service whose admin endpoint is off ([admin] enabled "
                    "= false): stop the service first, or enable its admin endpoint",
                    markup=False,
                )
                raise typer.Exit(1) from None
            try:
                doc, by_service = asyncio.run(through_service()), True
            except _ServiceAnswer as exc:
                _err.print(str(exc), markup=False)
                raise typer.Exit(1) from None
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                _err.print(
                    f"the outbox is in use by a running service, and its admin endpoint at {_admin_url(cfg)} "
                    f"did not answer ({type(exc).__name__}: {exc}); stop the service first, or check [admin]",
                    markup=False,
                )
                raise typer.Exit(1) from None
        except Exception as exc:
            _err.print(f"back-fill could not run: {type(exc).__name__}: {exc}", markup=False)
            raise typer.Exit(1) from None
    for line in outcome_lines(doc, by_service=by_service):
        _out.print(line, markup=False, soft_wrap=True)
    raise typer.Exit(exit_code(doc))


# -- config ------------------------------------------------------------------------------------------------


def example_text() -> str:
    return resources.files("gcbridge.bridge").joinpath("static", "gcbridge.example.toml").read_text("utf-8")


@config_app.command("example", help="Print a commented example configuration.")
def config_example() -> None:
    sys.stdout.write(example_text())


@config_app.command(
    "validate", help="Validate a configuration (file + environment) and show it, secrets masked."
)
def config_validate(config: ConfigOption = Path(DEFAULT_CONFIG)) -> None:
    cfg = _load(config)
    sys.stdout.write(cfg.model_dump_json(indent=2) + "\n")
    _err.print(f"{config}: valid", markup=False)

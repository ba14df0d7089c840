"""Where the client's receive time goes: the compiled intake with parts of its per-frame work cut out.

    .venv/bin/python bench/ablate_intake.py [--events 5000] [--rounds 60]

Builds variants of ``src/gcbridge/genesys/_intake_c.pyx`` (Cython, from the dev extra) into a temporary
directory, runs one NotificationClient per variant and the bare loop of ``bench_receive.py`` against one
simulator, and prints each one's median per-round rate ratio to bare and to the shipped intake. The variants
are not products: they drop work the client must do, to show what each part costs.

- ``plumbing``: the reader tells event frames from the rest by their first characters and defers them; the
  consumer parses each one and takes the parsed dict; no clock, health stamp, look-ups, key, Event or
  de-duplication. What the client's task, buffer and ``batches()`` cost alone;
- ``+stamp``: also reads the clock and stamps socket health;
- ``+classify``: also finds topic, body, metadata and CorrelationId, hashes the key, checks the topic;
- ``+event``: also builds the Event (everything but the de-duplication window);
- ``shipped``: the intake as shipped, built the same way;
- ``reader-parses``: the shipped intake without deferral: the reader parses every frame and hands the
  Events over (the design before 2026-11-30).

Each variant is made by replacing exact lines of the .pyx; when the source changes, a replacement that no
longer matches stops the script with the line it looked for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from bench_receive import (
    BARE_TOPIC,
    CLIENT_ID,
    CLIENT_SECRET,
    Drain,
    _bare_drain,
    _timed,
    simulator,
    subscribed_socket,
)

from gcbridge.genesys import ClientOptions, NotificationClient
from gcbridge.genesys import client as client_module
from gcbridge.genesys.auth import TokenManager
from gcbridge.genesys.rest import NotificationsApi, new_session

PYX = Path(__file__).resolve().parent.parent / "src" / "gcbridge" / "genesys" / "_intake_c.pyx"

_HAND_ON = "        self.made = data\n        self.events += 1\n        return _EVENT\n"
_BODY_LOOKUP = "        p = PyDict_GetItemWithError(data, _EVENT_BODY)\n"
_AFTER_OTHER = "            self.other = data\n            return _OTHER\n" + _BODY_LOOKUP
_AFTER_CLASSIFY = "        if type(body) is not dict:\n            body = {_VALUE: body}\n"
_CLOCK = "        now = _monotonic() if self.c_clock else self.clock()\n        self.now = now\n"
_LAZY_STAMP = (
    "            if now - self.stamped >= _STAMP_EVERY or now < self.stamped:\n"
    "                self._stamp(now)\n"
)
_SHARED = "        if now < <double>self.shared_until[0]:"
_DEDUP = "        if not self.resends.first_hash(key, now):"
_DEFER = "        if self.defer and type(data) is str and _starts_as_event(<str>data):"

_hand_on_after_other = (_AFTER_OTHER, _AFTER_OTHER.replace(_BODY_LOOKUP, _HAND_ON + _BODY_LOOKUP))
VARIANTS: dict[str, list[tuple[str, str]]] = {
    "plumbing": [
        _hand_on_after_other,
        (_CLOCK, "        now = 0.0\n"),
        (_LAZY_STAMP, ""),
        (_SHARED, "        if False:"),
    ],
    "+stamp": [_hand_on_after_other],
    "+classify": [(_AFTER_CLASSIFY, _HAND_ON + _AFTER_CLASSIFY)],
    "+event": [(_DEDUP, "        if False:")],
    "shipped": [],
    "reader-parses": [(_DEFER, "        if False:")],
}


def build(directory: Path) -> dict[str, ModuleType]:
    """Compile every variant as its own module in ``directory``; returns them by variant name."""
    source = PYX.read_text()
    modules = {}
    for i, (name, replacements) in enumerate(VARIANTS.items()):
        text = source
        for old, new in replacements:
            if old not in text:
                raise SystemExit(f"variant {name}: {PYX.name} no longer has the line(s)\n{old}")
            text = text.replace(old, new, 1)
        module = f"_ablate_{i}"
        (directory / f"{module}.pyx").write_text(text)
        subprocess.run(  # noqa: S603 - our interpreter on a file we just wrote
            [sys.executable, "-m", "Cython.Build.Cythonize", "-q", "-3", "-i", f"{module}.pyx"],
            cwd=directory,
            check=True,
            capture_output=True,
        )
        modules[name] = importlib.import_module(module)
    return modules


def _count_drain(client: NotificationClient) -> Drain:
    """Counts items of any type: the stripped variants hand on parsed dicts, not Events."""

    async def drain(n: int) -> None:
        got = 0
        async for batch in client.batches():
            got += len(batch)
            if got >= n:
                break

    return drain


def _client_with(module: ModuleType, base_url: str, options: ClientOptions) -> NotificationClient:
    # The client builds its Intake from names imported into its module; a benchmark-only swap of them.
    names = vars(client_module)
    saved = {name: names[name] for name in ("Intake", "DedupWindow")}
    names.update(Intake=module.Intake, DedupWindow=module.DedupWindow)
    try:
        return NotificationClient(
            base_url=base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, options=options
        )
    finally:
        names.update(saved)


async def main(events: int, rounds: int, modules: dict[str, ModuleType]) -> None:
    options = ClientOptions(queue_size=events + 10)
    rows: list[dict[str, tuple[float, float]]] = []
    with simulator(events) as (base_url, burst):
        clients = {name: _client_with(module, base_url, options) for name, module in modules.items()}
        async with contextlib.AsyncExitStack() as stack:
            session = await stack.enter_async_context(new_session())
            tm = TokenManager(session, base_url + "/oauth/token", CLIENT_ID, CLIENT_SECRET)
            api = NotificationsApi(session, base_url, tm)
            ws = await subscribed_socket(session, api, BARE_TOPIC)
            sides = {"bare": (burst(BARE_TOPIC), _bare_drain(ws))}
            for i, (name, client) in enumerate(clients.items()):
                await stack.enter_async_context(client)
                topic = f"v2.users.0a1b2c3d-0000-4000-8000-{i + 100:012d}.presence"
                await client.subscribe([topic])
                sides[name] = (burst(topic), _count_drain(client))
            order = list(sides)
            for r in range(-1, rounds):  # round -1 warms up and is not counted
                random.shuffle(order)
                got = {name: await _timed(*sides[name], events) for name in order}
                if r >= 0:
                    rows.append(got)
            await ws.close()
            await tm.aclose()

    print(f"{rounds} rounds of {events:,} events, median per-round ratios (CPU time of this process):")
    for name in modules:
        to_bare = statistics.median(row["bare"][1] / row[name][1] for row in rows)
        to_shipped = statistics.median(row["shipped"][1] / row[name][1] for row in rows)
        print(f"  {name:10s} rate / bare {to_bare:.2f}   rate / shipped {to_shipped:.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--events", type=int, default=5_000)
    ap.add_argument("--rounds", type=int, default=60)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gcbridge-ablate-") as tmp:
        sys.path.insert(0, tmp)
        built = build(Path(tmp))
        asyncio.run(main(args.events, args.rounds, built))

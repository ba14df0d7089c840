"""The status page in a real headless browser (Debian's chromium), showing live state.

Needs /usr/bin/chromium (``scripts/test-prereqs.sh`` installs it; ``make test`` runs that first). The page
is checked as a person would see it: counters move as events flow, the channel table shows the live
channel, and no secret is on the page. The screenshot is kept in ``test-artifacts/status-page.png``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gcbridge.bridge.service import BridgeService
from gcbridge.bridge.status import topic_count
from gcbridge.genesys.events import Gap
from gcbridge.sim.servicenow.sim import ServiceNowSim

from .conftest import (
    GENESYS_SECRET,
    SN_PASSWORD,
    TOPICS,
    ScriptedClient,
    make_events,
    running_service,
    service_config,
    wait_for,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
NO_VALUE = "\N{EN DASH}"  # what the page shows where it has no number
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
# A gateway URL without a single space to break at: it must wrap inside its card, not overflow it.
LONG_BASE_URL = (
    "http://127.0.0.1:9/genesys-cloud-notification-gateway/eu-west-1/org-" + "0123456789abcdef" * 4
)
COMBINED = "v2.users.0b7c1e2a-2f4d-4e59-9a1e-5f3c2d1b0a99?presence&routingStatus&geolocation"


def chromium_or_fail() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/test-prereqs.sh` (apt-get install chromium)")


class ChannelClient(ScriptedClient):
    """A client whose channel has been connected since yesterday evening and expires tomorrow."""

    def __init__(self, connected_since: float, expires_at: float) -> None:
        super().__init__()
        self.connected_since, self.expires_at = connected_since, expires_at

    def stats(self) -> dict[str, Any]:
        doc = super().stats()
        doc["channels"][0].update(
            connected_since=self.connected_since,
            expires_at=self.expires_at,
            topic_count=topic_count(self.subscribed),  # as NotificationClient counts: combined ones expanded
        )
        return doc


@asynccontextmanager
async def service_with(
    tmp_path: Path, sn: ServiceNowSim, client: ScriptedClient
) -> AsyncIterator[BridgeService]:
    assert sn.base_url is not None
    cfg = service_config(tmp_path, sn.base_url, [*TOPICS, COMBINED])
    cfg = cfg.model_copy(update={"genesys": cfg.genesys.model_copy(update={"base_url": LONG_BASE_URL})})
    service = BridgeService(cfg, install_signals=False, client_factory=lambda _c: client)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


@pytest.mark.browser
async def test_status_page_shows_live_state(tmp_path: Path, sn: ServiceNowSim) -> None:
    chromium_or_fail()
    from playwright.async_api import async_playwright, expect

    client = ScriptedClient()
    async with running_service(tmp_path, sn, client) as service:
        events = make_events(40)
        for event in events[:20]:
            client.queue.put_nowait(event)
        assert service.sink is not None
        sink = service.sink
        await wait_for(lambda: sink.delivered >= 20, what="first events delivered")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1200, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                requests: list[str] = []
                page.on("request", lambda req: requests.append(req.url))
                await page.goto(f"{service.admin_url}/")
                # expect() polls from playwright's own world: the page's CSP forbids eval in its own.
                await expect(page.locator("#events-received")).to_have_text("20", timeout=30_000)
                await expect(page.locator("#state")).to_have_text("running")
                await expect(page.locator("#ready")).to_have_text("ready", timeout=30_000)
                row = page.locator("#channels tbody tr").first
                await expect(row).to_contain_text("streaming-0-abc")
                await expect(row).to_contain_text("live")

                for event in events[20:]:
                    client.queue.put_nowait(event)
                # The page polls /status by itself: the counters move without a reload.
                await expect(page.locator("#events-received")).to_have_text("40", timeout=30_000)
                delivered_40 = re.compile(r"^(4\d|[5-9]\d|\d{3,})$")
                await expect(page.locator("#delivered")).to_have_text(delivered_40, timeout=30_000)
                html = await page.content()
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)
            finally:
                await browser.close()
        assert not errors, errors
        assert all(url.startswith(service.admin_url or "-") for url in requests), requests
        assert GENESYS_SECRET not in html
        assert SN_PASSWORD not in html
        assert (ARTIFACTS / "status-page.png").stat().st_size > 10_000


# Every element wider than its box (text that overflows), or reaching past the viewport's right edge.
_OVERFLOWING = """() => [...document.querySelectorAll("body *")]
    .filter((el) => el.scrollWidth > el.clientWidth + 1 || el.getBoundingClientRect().right > innerWidth)
    .map((el) => el.id || el.className || el.tagName)"""


@pytest.mark.browser
async def test_status_page_reads_well_at_1280px(tmp_path: Path, sn: ServiceNowSim) -> None:
    """Numbers in every counter, dates that cannot be misread, nothing overflowing, the last hour drawn."""
    chromium_or_fail()
    from playwright.async_api import async_playwright, expect

    now = time.time()
    client = ChannelClient(connected_since=now - 20 * 3600, expires_at=now + 4 * 3600)
    async with service_with(tmp_path, sn, client) as service:
        for event in make_events(12):
            client.queue.put_nowait(event)
        client.queue.put_nowait(Gap(now - 600.0, now - 560.0, tuple(TOPICS), "socket_dropped", "test"))
        assert service.sink is not None
        sink = service.sink
        await wait_for(lambda: sink.delivered >= 12 and service.journal.count == 1, what="events and gap")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 1000})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(f"{service.admin_url}/")
                await expect(page.locator("#events-received")).to_have_text("12", timeout=30_000)
                # one element per id: "rejected" once showed nothing because a second element took its text
                assert await page.locator("[id=rejected]").count() == 1
                await expect(page.locator("#rejected")).to_have_text("0")
                await expect(page.locator("#retries")).to_have_text("0")
                for counter in await page.locator(".card [id]").all():
                    text = (await counter.text_content() or "").strip()
                    assert text not in ("", NO_VALUE), await counter.get_attribute("id")
                # a combined topic is the topics it combines: 2 plain + 3 combined
                await expect(page.locator("#topics")).to_have_text("5")
                await expect(page.locator("#channels tbody tr").first.locator("td").nth(3)).to_have_text("5")

                cells = page.locator("#channels tbody tr").first.locator("td")
                connected, expires = await cells.nth(4).text_content(), await cells.nth(6).text_content()
                assert DATE_TIME.match(connected or ""), connected
                assert DATE_TIME.match(expires or ""), expires
                assert expires > connected  # both carry the date: the later time reads as later
                gap_from = (
                    await page.locator("#recent-gaps tbody tr").first.locator("td").first.text_content()
                )
                assert DATE_TIME.match(gap_from or ""), gap_from

                # every event of this run is in the last hour's bars (one minute, or two across a boundary)
                await expect(page.locator("#chart-events-in .latest")).to_contain_text("peak ")
                bars = page.locator("#chart-events-in rect.bar title")
                per_minute = [
                    int(re.sub(r"\D", "", t.split(": ")[1])) for t in await bars.all_text_contents()
                ]
                assert sum(per_minute) == 12, per_minute
                assert await page.locator("#chart-records-written rect.bar").count() >= 1
                await expect(page.locator("#gap-timeline .latest")).to_have_text("1 in the last hour")
                assert await page.locator("#gap-timeline rect.gap").count() == 1
                await expect(page.locator("#genesys-endpoint")).to_have_text(LONG_BASE_URL)
                overflowing = await page.evaluate(_OVERFLOWING)
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "status-page-1280.png"), full_page=True)
            finally:
                await browser.close()
        assert not overflowing, overflowing
        assert not errors, errors

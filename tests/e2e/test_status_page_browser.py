"""The status page in a real headless browser (Debian's chromium), showing live state.

Needs /usr/bin/chromium (``scripts/test-prereqs.sh`` installs it; ``make test`` runs that first). The page
is checked as a person would see it: counters move as events flow, the channel table shows the live
channel, and no secret is on the page. The screenshot is kept in ``test-artifacts/status-page.png``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from gcbridge.sim.servicenow.sim import ServiceNowSim

from .conftest import (
    GENESYS_SECRET,
    SN_PASSWORD,
    ScriptedClient,
    make_events,
    running_service,
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


@pytest.mark.browser
async def test_status_page_shows_live_state(tmp_path: Path, sn: ServiceNowSim) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/test-prereqs.sh` (apt-get install chromium)")
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

"""What an analyst sees after signing in, in Chromium: ts.watch's live table updating in place
and a plotted bar chart. The screenshots are the README's (docs/)."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from ..parts.waiting import eventually_sync
from .test_click_through import open_notebook, sign_in_tab

PLOT = """bars = ts.bars("MSFT", barsback=60)
import mplfinance as mpf
mpf.plot(bars, type="candle", volume=True, style="yahoo", title="MSFT, daily", figsize=(9, 5))"""


def test_watch_updates_in_place_and_bars_plot(jupyter, browser, emulator, artifacts):
    emulator.configure_streams(interval=0.1, heartbeat=5.0, goaway_after=None, rechunk_seed=2)
    nb = open_notebook(browser, jupyter)
    login = nb.run("%load_ext ts_notebook\n%ts_login")
    link = login.locator("a.ts-notebook-signin")
    expect(link).to_be_visible(timeout=90_000)
    sign_in_tab(browser, link, "allow").close()
    expect(login.locator(".ts-notebook-status")).to_contain_text("Signed in as analyst", timeout=30_000)

    watch = nb.run('ts.watch(["MSFT", "AAPL", "SPY", "QQQ"], seconds=60)')
    grid = watch.locator("table.ts-notebook-watch")
    expect(grid.locator("tbody tr")).to_have_count(4, timeout=60_000)
    expect(grid.locator("tbody tr").first).to_contain_text(re.compile(r"MSFT\s*\d+\.\d\d"), timeout=30_000)
    before = grid.inner_text()
    eventually_sync(lambda: grid.inner_text() != before, 30, "the table updated in place")  # in the same output
    assert watch.locator("table.ts-notebook-watch").count() == 1
    watch.screenshot(path=artifacts / f"{jupyter.app}-watch.png")
    watch.locator("button", has_text="Stop").click()
    expect(watch).to_contain_text("Stopped.", timeout=15_000)

    chart = nb.run(PLOT)
    expect(chart.locator(".jp-OutputArea-output img")).to_be_visible(timeout=60_000)
    chart.locator(".jp-OutputArea-output img").screenshot(path=artifacts / f"{jupyter.app}-bars.png")

"""TradeStation in JupyterLab itself, in Chromium: the status item (at the top of the page in
Notebook 7, which has no status bar), its popup, the commands, and signing in with no kernel.
The server runs from a new venv holding only the wheel, JupyterLab and Notebook 7: the
prebuilt extension as a user installs it, never an editable one.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from ..parts.browser import Browser
from .conftest import secrets_in
from .test_click_through import ACCOUNTS, open_notebook

ITEM = ".ts-notebook-status-item"
POPUP = ".ts-notebook-popup"
SIGNED_IN = re.compile(r"^TradeStation · analyst · (LIVE|SIM) · \d+ min$")
DOCS = Path(__file__).resolve().parents[2] / "docs"


class Seen:
    """Everything a page's frontend received: each HTTP response body and each websocket frame."""

    def __init__(self, page: Page) -> None:
        self.responses: list = []
        self.frames: list[str] = []
        self.long_polls = 0  # asks of the status route that the server may hold (since=)
        page.on("response", lambda r: self.responses.append(r))
        page.on("request", self._asked)
        page.on("websocket", lambda ws: ws.on("framereceived", lambda f: self.frames.append(str(f))))

    def _asked(self, request) -> None:
        self.long_polls += "/ts_notebook/api/status?since=" in request.url

    def status_asks(self) -> int:
        return sum("/ts_notebook/api/status" in r.url for r in self.responses)

    def text(self) -> str:
        bodies = []
        for r in self.responses:
            try:
                bodies.append(r.body().decode("utf-8", "replace"))
            except Exception:  # a redirect, or a long-poll still held when the page closed
                pass
        return "\n".join(bodies + self.frames)


def open_app(browser, jupyter) -> tuple[Page, Seen]:
    """The app's file browser: a page with no kernel."""
    page = browser.new_page()
    seen = Seen(page)
    page.goto(f"{jupyter.url}{'lab' if jupyter.app == 'lab' else 'tree'}?token={jupyter.token}")
    expect(page.locator(ITEM)).to_be_visible(timeout=90_000)
    return page, seen


def shoot(page: Page, item, popup, path: Path) -> None:
    """A screenshot of the item and its popup together."""
    a, b = item.bounding_box(), popup.bounding_box()
    left, top = max(0, min(a["x"], b["x"]) - 8), max(0, min(a["y"], b["y"]) - 8)
    right = max(a["x"] + a["width"], b["x"] + b["width"]) + 8
    bottom = max(a["y"] + a["height"], b["y"] + b["height"]) + 8
    page.screenshot(path=path, clip={"x": left, "y": top, "width": right - left, "height": bottom - top})


def kernels(jupyter) -> list:
    return requests.get(f"{jupyter.url}api/kernels", params={"token": jupyter.token}, timeout=10).json()


def sign_in_in_new_tab(browser, click) -> Page:
    """Click what opens TradeStation's page; sign in there as analyst and Allow."""
    with browser.expect_page() as opened:
        click()
    tab = opened.value
    tab.locator("#username").fill("analyst")
    tab.locator("#allow").click()
    expect(tab.locator("#ts-result")).to_have_text("Signed in to TradeStation as analyst.")
    return tab


def palette(page: Page, label: str) -> None:
    """Run a command from the command palette, as a person types it (again, while the page is
    still starting and its shortcuts are not yet bound)."""
    search = page.locator(".lm-CommandPalette-input")
    deadline = time.monotonic() + 90
    while True:
        assert time.monotonic() < deadline, "the command palette did not open and stay open"
        if not search.is_visible():
            page.keyboard.press("Control+Shift+C")
            page.wait_for_timeout(500)
            continue
        try:  # a page still starting may close the palette again (its layout takes the focus)
            search.fill(label, timeout=3000)
            page.locator(".lm-CommandPalette-item", has_text=label).first.click(timeout=3000)
            return
        except PlaywrightTimeout:
            continue


def test_the_wheel_alone_installs_the_prebuilt_extension(wheel_python):
    jupyter = Path(wheel_python).parent / "jupyter"
    listed = subprocess.run([str(jupyter), "labextension", "list"], capture_output=True, text=True, timeout=120)
    text = re.sub(r"\x1b\[[0-9;]*m", "", listed.stdout + listed.stderr)
    assert re.search(r"ts-notebook v[\d.]+ enabled OK \(python, ts_notebook\)", text), text
    share = Path(wheel_python).parents[1] / "share" / "jupyter" / "labextensions" / "ts-notebook"
    assert json.loads((share / "install.json").read_text())["packageName"] == "ts_notebook"
    assert (share / "static" / "style.js").exists()


def test_sign_in_with_no_kernel_and_the_item_follows_every_notebook(jupyter_from_wheel, browser, emulator, artifacts):
    jupyter = jupyter_from_wheel
    page, seen = open_app(browser, jupyter)
    item = page.locator(ITEM)
    expect(item).to_have_text("TradeStation · signed out")
    assert kernels(jupyter) == []

    item.click()
    expect(page.locator(POPUP)).to_contain_text("No kernel is needed")
    sign_in_in_new_tab(browser, page.locator(f"{POPUP} .ts-notebook-signin").click)
    expect(item).to_have_text(SIGNED_IN)  # no reload: the long-poll brought it
    assert kernels(jupyter) == [], "signing in started a kernel"
    item.click()
    popup = page.locator(POPUP)
    expect(popup).to_contain_text("Signed in as")
    expect(popup).to_contain_text("openid")  # the scopes
    expect(popup).to_contain_text("Renews")
    shoot(page, item, popup, artifacts / f"status-{jupyter.app}-signed-in.png")
    page.keyboard.press("Escape")
    expect(popup).to_have_count(0)

    # A kernel started afterwards is signed in.
    nb = open_notebook(browser, jupyter)
    accounts = nb.run("%load_ext ts_notebook\n" + ACCOUNTS)
    expect(accounts.locator(".jp-OutputArea-output")).to_have_text("11111111")

    # %ts_logout in the notebook: the other page's item says so at once (the test notes when,
    # on the page's clock, against the time the kernel's %ts_logout returned).
    page.evaluate(
        """() => new MutationObserver((_, observer) => {
             if (document.querySelector('.ts-notebook-status-item').textContent.endsWith('signed out')) {
               window.tsSignedOutAt = Date.now(); observer.disconnect();
             }
           }).observe(document.querySelector('.ts-notebook-status-item'), {childList: true, characterData: true,
                                                                            subtree: true})"""
    )
    out = nb.run("%ts_logout\nimport time; print(f'returned at {time.time() * 1000:.0f}')")
    expect(out.locator(".jp-OutputArea-output").last).to_contain_text("returned at")
    expect(item).to_have_text("TradeStation · signed out", timeout=10_000)
    returned = float(re.search(r"returned at (\d+)", out.inner_text()).group(1))
    lag = page.evaluate("window.tsSignedOutAt") - returned
    print(f"the item said signed out {lag:+.0f} ms after %ts_logout returned")

    # No busy poll: a page asks again only when something changed (here, a handful of changes).
    assert seen.status_asks() < 20, seen.status_asks()
    assert not secrets_in(seen.text(), emulator), "the frontend received a token, code or secret"


def test_the_palette_signs_every_kernel_out_and_the_setting_hides_the_item(
    jupyter_from_wheel, browser, emulator, artifacts
):
    jupyter = jupyter_from_wheel
    nb = open_notebook(browser, jupyter)
    page = nb.page
    seen = Seen(page)
    item = page.locator(ITEM)
    expect(item).to_have_text("TradeStation · signed out", timeout=60_000)
    login = nb.run("%load_ext ts_notebook\n%ts_login")
    expect(login.locator(".ts-notebook-status")).to_contain_text("Not signed in", timeout=90_000)

    sign_in_in_new_tab(browser, lambda: palette(page, "Sign in to TradeStation"))
    expect(item).to_have_text(SIGNED_IN)
    expect(login.locator(".ts-notebook-status")).to_contain_text("Signed in as analyst")  # they agree

    # The Settings menu holds the three commands.
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    menu = page.locator(".lm-Menu-content")
    for label in ("Sign in to TradeStation", "Sign out of TradeStation", "Show TradeStation status"):
        expect(menu.locator(".lm-Menu-itemLabel", has_text=label)).to_have_count(1)
    page.keyboard.press("Escape")

    palette(page, "Sign out of TradeStation")
    expect(item).to_have_text("TradeStation · signed out")
    expect(login.locator(".ts-notebook-status")).to_contain_text("Not signed in")
    refused = nb.run(ACCOUNTS)
    expect(refused.locator(".jp-OutputArea-output")).to_contain_text("Run %ts_login")

    # The setting hides the item; "Show TradeStation status" still tells.
    xsrf = next(c["value"] for c in page.context.cookies() if c["name"] == "_xsrf")
    stored = page.evaluate(
        """async ([xsrf]) => (await fetch('/lab/api/settings/ts-notebook:plugin', {method: 'PUT',
             headers: {'X-XSRFToken': xsrf, 'Content-Type': 'application/json'},
             body: JSON.stringify({raw: '{"showStatusItem": false}'})})).status""",
        [xsrf],
    )
    assert stored == 204, stored
    page.reload()
    expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=90_000)
    page.wait_for_timeout(2000)  # the extension has loaded its settings by now
    expect(item).to_be_hidden()
    palette(page, "Show TradeStation status")
    expect(page.locator(".jp-Dialog")).to_contain_text("TradeStation · signed out")
    assert not secrets_in(seen.text(), emulator), "the frontend received a token, code or secret"


def test_an_ended_sign_in_shows_a_red_badge_that_says_what_to_do(jupyter_from_wheel, browser, emulator, artifacts):
    jupyter = jupyter_from_wheel
    page, seen = open_app(browser, jupyter)
    item = page.locator(ITEM)
    sign_in_in_new_tab(browser, lambda: palette(page, "Sign in to TradeStation"))
    expect(item).to_have_text(SIGNED_IN)
    expect(item).to_have_attribute("data-tone", "signed-in")

    # TradeStation revokes the grant; the next renewal is refused and the sign-in has ended.
    runtime = next((jupyter.root.parent / "runtime").glob("ts_notebook-*.json"))
    info = json.loads(runtime.read_text())
    api = f"{info['url'].rstrip('/')}/ts_notebook/api"
    key = {"X-TS-Notebook-Key": info["key"]}
    stale = requests.get(f"{api}/token", headers=key, timeout=10).json()["access_token"]
    emulator.revoke_refresh_tokens()
    emulator.revoke_access_tokens()
    requests.post(f"{api}/refresh", headers=key, json={"stale": stale}, timeout=30)

    expect(item).to_have_text("TradeStation · sign in again")
    expect(item).to_have_attribute("data-tone", "ended")
    assert "rgb(" in item.evaluate("e => getComputedStyle(e).backgroundColor")
    item.click()
    popup = page.locator(POPUP)
    expect(popup).to_contain_text("has ended")
    expect(popup).to_contain_text("click Sign in")
    expect(popup.locator(".ts-notebook-signin")).to_be_visible()
    shoot(page, item, popup, artifacts / f"status-{jupyter.app}-ended.png")

    # Sign in again from the popup: the badge is gone.
    sign_in_in_new_tab(browser, popup.locator(".ts-notebook-signin").click)
    expect(item).to_have_text(SIGNED_IN)
    assert not secrets_in(seen.text(), emulator), "the frontend received a token, code or secret"


@pytest.mark.parametrize("jupyter_from_wheel", ["notebook"], indirect=True)  # a tab per notebook there
def test_seven_tabs_hold_one_long_poll_and_another_takes_over_when_it_closes(jupyter_from_wheel, browser, emulator):
    """A browser keeps six connections to a server: a long-poll per tab would stall the seventh."""
    jupyter = jupyter_from_wheel
    tabs = [open_app(browser, jupyter) for _ in range(7)]
    for page, _ in tabs:
        expect(page.locator(ITEM)).to_have_text("TradeStation · signed out")
        expect(page.locator(".jp-DirListing-item").first).to_be_visible()  # the page's own requests got through
    tabs[-1][0].wait_for_timeout(1500)
    leaders = [i for i, (_, seen) in enumerate(tabs) if seen.long_polls]
    assert len(leaders) == 1, [seen.long_polls for _, seen in tabs]

    tabs[leaders[0]][0].close()
    person = Browser(jupyter.url, jupyter.token)
    person.sign_in_to_jupyter()
    assert "Signed in to TradeStation" in person.sign_in_to_tradestation("ts_notebook/login").text
    rest = [page for i, (page, _) in enumerate(tabs) if i != leaders[0]]
    for page in rest:
        expect(page.locator(ITEM)).to_have_text(SIGNED_IN)
    assert sum(bool(seen.long_polls) for i, (_, seen) in enumerate(tabs) if i != leaders[0]) == 1

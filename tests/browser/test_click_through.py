"""What an analyst does, in Chromium: run %ts_login, click the button, sign in in the new tab,
come back to a widget that says "Signed in as ...", call the API, save. JupyterLab 4 and
Notebook 7 alike.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Locator, Page, expect

from .conftest import secrets_in

ACCOUNTS = 'print(ts.session.get("brokerage/accounts").json()["Accounts"][0]["AccountID"])'


class Notebook:
    """The open notebook, as a person uses it: type into the last cell, Shift+Enter."""

    def __init__(self, page: Page) -> None:
        self.page = page

    def run(self, code: str) -> Locator:
        cells = self.page.locator(".jp-Notebook .jp-Cell")
        expect(cells.first).to_be_visible(timeout=90_000)
        index = cells.count() - 1
        cell = cells.nth(index)
        editor = cell.locator(".cm-content")
        editor.click()
        self.page.keyboard.insert_text(code)  # no key events: no auto-closed brackets
        expect(editor).to_contain_text(code.splitlines()[0])
        self.page.keyboard.press("Shift+Enter")
        expect(cells).to_have_count(index + 2)  # ran, and a fresh cell waits below
        return cell

    def save(self) -> None:
        self.page.locator(".jp-Notebook .jp-Cell").last.locator(".cm-content").click()
        self.page.keyboard.press("Control+s")


def open_notebook(browser, jupyter) -> Notebook:
    """Open the test notebook and wait for its kernel, answering a kernel dialog as a person
    would (Notebook 7 may ask even when the notebook names its kernel)."""
    page = browser.new_page()
    page.goto(jupyter.notebook_url("signin.ipynb"))
    expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=90_000)
    accept = page.locator(".jp-Dialog .jp-mod-accept")
    idle = page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]')
    deadline, settled = time.monotonic() + 90, 0
    while settled < 8 and time.monotonic() < deadline:  # idle, with no dialog, for 8 looks in a row
        if accept.count() and accept.first.is_visible():
            accept.first.click()
            settled = 0
        settled = settled + 1 if idle.count() else 0
        page.wait_for_timeout(200)
    return Notebook(page)


def sign_in_tab(browser, link: Locator, decision: str) -> Page:
    """Click the widget's button; in the tab it opens, sign in and press Allow or Deny."""
    with browser.expect_page() as opened:
        link.click()
    tab = opened.value
    tab.locator("#username").fill("analyst")
    tab.locator(f"#{decision}").click()
    tab.wait_for_load_state()
    return tab


def test_sign_in_with_one_click_then_call_the_api_and_save(jupyter, browser, emulator, artifacts):
    nb = open_notebook(browser, jupyter)
    login = nb.run("%load_ext ts_notebook\n%ts_login")
    link = login.locator("a.ts-notebook-signin")
    status = login.locator(".ts-notebook-status")
    expect(link).to_be_visible(timeout=90_000)
    expect(status).to_contain_text("Not signed in")
    login.screenshot(path=artifacts / f"{jupyter.app}-1-widget-before.png")

    tab = sign_in_tab(browser, link, "allow")
    expect(tab.locator("#ts-result")).to_have_text("Signed in to TradeStation as analyst.")
    tab.screenshot(path=artifacts / f"{jupyter.app}-2-callback.png")

    # Back in the notebook: the widget changed by itself, nothing was run.
    expect(status).to_contain_text("Signed in as analyst · token valid until")
    expect(link).to_be_hidden()
    login.screenshot(path=artifacts / f"{jupyter.app}-3-widget-after.png")
    accounts = nb.run(ACCOUNTS)
    expect(accounts.locator(".jp-OutputArea-output")).to_have_text("11111111")

    nb.save()
    saved = jupyter.root / "signin.ipynb"
    deadline = time.monotonic() + 30
    while "11111111" not in saved.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "11111111" in saved.read_text() and "ts_login" in saved.read_text()
    assert not secrets_in(saved.read_text(), emulator), "the saved notebook holds a secret"
    assert not secrets_in(jupyter.log_text(), emulator), "the server log holds a secret"


def test_a_second_login_shows_the_state_and_signs_out_everywhere(jupyter, browser, emulator, artifacts):
    nb = open_notebook(browser, jupyter)
    first = nb.run("%load_ext ts_notebook\n%ts_login")
    expect(first.locator("a.ts-notebook-signin")).to_be_visible(timeout=90_000)
    sign_in_tab(browser, first.locator("a.ts-notebook-signin"), "allow")
    expect(first.locator(".ts-notebook-status")).to_contain_text("Signed in as analyst")

    again = nb.run("%ts_login")
    expect(again.locator(".ts-notebook-status")).to_contain_text("Signed in as analyst")
    again.screenshot(path=artifacts / f"{jupyter.app}-4-signed-in-again.png")
    again.locator(".ts-notebook-signout").click()

    expect(again.locator(".ts-notebook-status")).to_contain_text("Not signed in")
    expect(first.locator(".ts-notebook-status")).to_contain_text("Not signed in")
    expect(again.locator("a.ts-notebook-signin")).to_be_visible()
    refused = nb.run(ACCOUNTS)
    expect(refused.locator(".jp-OutputArea-output")).to_contain_text("Run %ts_login")


def test_deny_shows_a_readable_error_in_the_widget(jupyter, browser, emulator, artifacts):
    nb = open_notebook(browser, jupyter)
    login = nb.run("%load_ext ts_notebook\n%ts_login")
    expect(login.locator("a.ts-notebook-signin")).to_be_visible(timeout=90_000)

    tab = sign_in_tab(browser, login.locator("a.ts-notebook-signin"), "deny")

    expect(tab.locator("#ts-result")).to_have_text("Sign-in not completed")
    expect(login.locator(".ts-notebook-status")).to_contain_text("access_denied (User did not authorize the request)")
    expect(login.locator("a.ts-notebook-signin")).to_be_visible()
    login.screenshot(path=artifacts / f"{jupyter.app}-5-denied.png")
    assert emulator.grants == []


@pytest.mark.no_localhost
def test_a_browser_that_cannot_reach_the_callback_pastes_the_address(jupyter, browser, emulator, artifacts):
    nb = open_notebook(browser, jupyter)
    login = nb.run("%load_ext ts_notebook\n%ts_login")
    expect(login.locator("a.ts-notebook-signin")).to_be_visible(timeout=90_000)
    failed: list[str] = []  # what the error page's address bar shows
    browser.on("requestfailed", lambda request: failed.append(request.url))
    sign_in_tab(browser, login.locator("a.ts-notebook-signin"), "allow")
    deadline = time.monotonic() + 30
    while not failed and time.monotonic() < deadline:
        login.page.wait_for_timeout(100)
    ended_on = failed[0]
    assert ended_on.startswith("http://localhost:31022") and "code=" in ended_on

    login.locator(".ts-notebook-paste summary").click()
    login.locator(".ts-notebook-paste-url").fill(ended_on)
    login.screenshot(path=artifacts / f"{jupyter.app}-6-paste.png")
    with browser.expect_page() as opened:
        login.locator(".ts-notebook-paste-submit").click()
    expect(opened.value.locator("#ts-result")).to_have_text("Signed in to TradeStation as analyst.")

    expect(login.locator(".ts-notebook-status")).to_contain_text("Signed in as analyst")
    assert not secrets_in(jupyter.log_text(), emulator), "the server log holds a secret"

"""``ipython`` opened in a Jupyter terminal (its environment names a live broker) uses the
server's sign-in rather than its own."""

from __future__ import annotations

import asyncio
import os
import sys

import pexpect

from ...parts.browser import Browser

PROMPT = r"In \[\d+\]: "


async def test_ipython_in_a_jupyter_terminal_waits_for_the_servers_sign_in(server, emulator):
    env = dict(os.environ)  # as a Jupyter terminal has it: TS_NOTEBOOK_BROKER names this server
    child = pexpect.spawn(
        sys.executable,
        ["-m", "IPython", "--no-banner", "--colors=NoColor", "--simple-prompt"],
        env=env,
        encoding="utf-8",
        timeout=30,
    )
    try:
        await asyncio.to_thread(child.expect, PROMPT)
        child.sendline("%load_ext ts_notebook")
        child.sendline("%ts_login --timeout 60")
        await asyncio.to_thread(child.expect, r"Open (http://127\.0\.0\.1:\d+/\S+/ts_notebook/login) in the browser")
        link = child.match.group(1)

        browser = Browser(server.url, server.token)
        await asyncio.to_thread(browser.sign_in_to_jupyter)
        await asyncio.to_thread(browser.sign_in_to_tradestation, link)

        await asyncio.to_thread(child.expect, "Signed in to TradeStation as analyst")
        child.sendline('print(ts.session.get("brokerage/accounts").status_code)')
        await asyncio.to_thread(child.expect, r"\r\n200\r\n")
        assert emulator.grants and emulator.grants[0]["grant_type"] == "authorization_code"
        assert len(emulator.grants) == 1  # one sign-in, held by the server
    finally:
        child.terminate(force=True)

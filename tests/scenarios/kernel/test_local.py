"""Sign-in with no Jupyter server: a real terminal IPython (driven through a pty) and a
kernel started without a server, against the emulator; tokens live in that process."""

from __future__ import annotations

import asyncio
import re

import pytest

from ts_notebook.protocol import ENV_VAR

from ...parts.browser import note_browser, opened_address
from ...parts.kernels import PROMPT, authorize_url, serverless_kernel, spawn_ipython
from ...parts.signin import sign_in_at
from ...parts.waiting import eventually, port_is_free

ACCOUNTS = 'print(ts.session.get("brokerage/accounts").json()["Accounts"][0]["AccountID"])'


async def test_terminal_login_listens_once_then_uses_the_tokens_in_process(ipython, emulator):
    ipython.sendline("%ts_login")
    url = authorize_url(ipython)
    ipython.expect("Waiting for the browser on http://localhost:31022")

    browser, page = await asyncio.to_thread(sign_in_at, url)

    ipython.expect("Signed in to TradeStation as analyst.")
    assert browser.visited[-1].startswith("http://localhost:31022") and "as analyst" in page.text
    ipython.expect(PROMPT)
    assert port_is_free(31022)
    ipython.sendline(ACCOUNTS)
    ipython.expect("11111111")
    ipython.expect(PROMPT)

    emulator.revoke_access_tokens()  # every thread gets a 401 at once: one refresh for all
    ipython.sendline(
        "from concurrent.futures import ThreadPoolExecutor; "
        "print(list(ThreadPoolExecutor(8).map(lambda _: ts.session.get('brokerage/accounts')"
        ".status_code, range(8))))"
    )
    ipython.expect(r"\[200, 200, 200, 200, 200, 200, 200, 200\]")
    assert [g["grant_type"] for g in emulator.grants] == ["authorization_code", "refresh_token"]


async def test_terminal_paste_completes_a_login_whose_browser_cannot_reach_localhost(ipython, emulator):
    ipython.sendline("%ts_login --paste")
    url = authorize_url(ipython)
    ipython.expect("paste the address your browser ended on: ")

    browser, _ = await asyncio.to_thread(sign_in_at, url, unreachable={"localhost:31022"})
    ipython.sendline(browser.ended_on)

    ipython.expect("Signed in to TradeStation as analyst.")
    ipython.sendline(ACCOUNTS)
    ipython.expect("11111111")


@pytest.mark.parametrize("how", ["ctrl-c", "timeout"])
async def test_a_cancelled_or_timed_out_login_frees_the_port(ipython, how):
    ipython.sendline("%ts_login --timeout 1" if how == "timeout" else "%ts_login")
    ipython.expect("Waiting for the browser")
    assert not port_is_free(31022)
    if how == "ctrl-c":
        ipython.sendintr()
    ipython.expect("Sign-in cancelled." if how == "ctrl-c" else "No sign-in within 1 s. Run %ts_login again.")
    ipython.expect(PROMPT)
    assert port_is_free(31022)
    assert "Traceback" not in ipython.before


async def test_a_stale_runtime_file_says_so_in_one_line_and_signs_in_here(local_env, emulator, tmp_path):
    local_env[ENV_VAR] = str(tmp_path / "server-long-gone.json")
    child = spawn_ipython(local_env)
    try:
        child.sendline("%ts_login")
        child.expect(r"ts_notebook: The Jupyter server that started this kernel is gone.*instead\.\r\n")
        url = authorize_url(child)
        await asyncio.to_thread(sign_in_at, url)
        child.expect("Signed in to TradeStation as analyst.")
        assert "Traceback" not in child.before
    finally:
        child.terminate(force=True)


async def test_a_kernel_with_no_server_shows_the_widget_and_renews_in_process(local_env, emulator, tmp_path):
    emulator.access_token_lifetime = 3
    noted = tmp_path / "opened.txt"
    local_env["BROWSER"] = str(note_browser(tmp_path / "browser", noted))
    async with serverless_kernel(local_env) as kernel:
        await kernel.run("%load_ext ts_notebook\n%ts_login")
        kernel.click(kernel.buttons("Sign in to TradeStation")[0])  # the kernel opens this machine's browser
        await eventually(lambda: noted.exists() and noted.read_text(), 20, "the browser was opened")
        link = opened_address(noted)
        assert re.fullmatch(r"http://localhost:31022/start/[\w-]{43}", link)  # one-time; no state in it
        assert "/start/" not in kernel.transcript()  # never in widget state, nor any other message

        await asyncio.to_thread(sign_in_at, link)

        await kernel.wait_for_widget(r"Signed in as analyst · token valid until")
        out = await kernel.run(
            "import time\ncodes = []\nend = time.time() + 7\nwhile time.time() < end:\n"
            "    codes.append(ts.session.get('brokerage/accounts').status_code)\n    time.sleep(0.2)\n"
            "print(set(codes))",
            timeout=60,
        )
        assert out.stdout.strip() == "{200}", out
        assert len({c["token_id"] for c in emulator.api_calls}) >= 2  # renewed inside the cell
        assert not [s for s in emulator.issued_secrets() if s in kernel.transcript()]


async def test_a_widget_login_that_times_out_says_so_and_frees_the_port(local_env):
    async with serverless_kernel(local_env) as kernel:
        await kernel.run("%load_ext ts_notebook\n%ts_login --timeout 1")
        await kernel.wait_for_widget(r"^No sign-in within 1 s\. Run %ts_login again\.$")
        assert kernel.widget_texts()[-1].startswith("No sign-in within 1 s")
        assert port_is_free(31022)

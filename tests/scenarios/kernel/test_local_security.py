"""An attack on the in-process sign-in in a real kernel with no Jupyter server (the others,
on LocalSource and its listener alone, are in tests/unit/kernel/test_local_security.py):
whoever reads the sign-in widget's state cannot sign the kernel in as themselves."""

from __future__ import annotations

import asyncio
import re

from ...parts.browser import note_browser, opened_address
from ...parts.kernels import serverless_kernel
from ...parts.signin import sign_in_at
from ...parts.waiting import eventually


async def test_whoever_reads_the_widget_state_finds_no_address_to_sign_the_victim_in_as_themselves(
    local_env, emulator, tmp_path
):
    noted = tmp_path / "opened.txt"
    local_env["BROWSER"] = str(note_browser(tmp_path / "browser", noted))
    async with serverless_kernel(local_env) as kernel:
        await kernel.run("%load_ext ts_notebook\n%ts_login")
        # Widget state goes to every frontend of the kernel and into the saved notebook.
        for address in re.findall(r"http://[\w.\[\]:]+/start/[\w-]+", kernel.transcript()):
            await asyncio.to_thread(sign_in_at, address, "mallory")  # the attacker, first
        assert "mallory" not in (await kernel.run("print(ts.status())")).stdout  # (its page came back after)

        kernel.click(kernel.buttons("Sign in to TradeStation")[0])  # the analyst
        await eventually(lambda: noted.exists() and noted.read_text(), 20, "the browser was opened")
        await asyncio.to_thread(sign_in_at, opened_address(noted), "analyst")

        await kernel.wait_for_widget(r"Signed in as analyst")
        assert "mallory" not in (await kernel.run("print(ts.status())")).stdout

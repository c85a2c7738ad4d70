"""``python -m ts_notebook.emulator`` as a person runs it: the ``export`` lines it prints, pasted
into a shell, point terminal IPython at it, and the sign-in and the API work there."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ...parts.kernels import PROMPT, authorize_url, environ_without_settings, spawn_ipython
from ...parts.signin import sign_in_at
from ..kernel.test_local import ACCOUNTS

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def printed():
    """The emulator as a process, and the lines it printed once it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ts_notebook.emulator", "--port", "0"],
        env={**environ_without_settings(), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while not any(line.startswith("unset ") for line in lines) and time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, f"the emulator stopped: {lines}"
        lines.append(line.rstrip("\n"))
    try:
        yield lines
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def pasted(lines: list[str], env: dict[str, str]) -> dict[str, str]:
    """The environment a shell has after these lines are pasted into it."""
    done = subprocess.run(
        ["bash", "-c", "\n".join(lines) + "\nenv -0"], env=env, capture_output=True, timeout=30, check=True
    )
    return dict(item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)


async def test_the_printed_export_lines_sign_terminal_ipython_in_to_the_emulator(printed):
    exports = [line for line in printed if line.startswith(("export ", "unset "))]
    assert [re.match(r"(?:export|unset) (\w+)", line).group(1) for line in exports] == [
        "TS_CLIENT_ID",
        "TS_SIGNIN_URL",
        "TS_API_URL",
        "TS_SIM_API_URL",
        "TS_CLIENT_SECRET",
    ]
    # A shell that still has another key's secret: the pasted lines clear it.
    shell = {**environ_without_settings(), "TS_CLIENT_SECRET": "left-over", "BROWSER": "true"}
    shell["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), shell.get("PYTHONPATH")]))
    env = pasted(exports, shell)
    assert "TS_CLIENT_SECRET" not in env

    child = spawn_ipython(env)
    try:
        child.sendline("%ts_login")
        await asyncio.to_thread(sign_in_at, authorize_url(child))
        child.expect("Signed in to TradeStation as analyst.")
        child.expect(PROMPT)
        child.sendline(ACCOUNTS)
        child.expect(r"\d{6,}")
    finally:
        child.terminate(force=True)

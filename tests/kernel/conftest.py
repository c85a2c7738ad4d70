"""A terminal or kernel with no Jupyter server behind it, against the emulator."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pexpect
import pytest

from ..conftest import emulator_env

ROOT = Path(__file__).resolve().parents[2]
PROMPT = r"In \[\d+\]: "


@pytest.fixture
def local_env(emulator, client_secret) -> dict[str, str]:
    """The environment of a terminal or kernel that has no Jupyter server behind it."""
    return emulator_env(
        emulator,
        client_secret,
        BROWSER="true",  # the system browser opener does nothing: the test is the browser
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )


def spawn_ipython(env: dict[str, str]) -> pexpect.spawn:
    """``ipython`` in a pseudo-terminal, with the extension loaded."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "IPython", "--no-banner", "--colors=NoColor", "--simple-prompt", "--no-confirm-exit"],
        env=env,
        encoding="utf-8",
        timeout=30,
    )
    child.expect(PROMPT)
    child.sendline("%load_ext ts_notebook")
    child.expect(PROMPT)
    return child


@pytest.fixture
def ipython(local_env):
    child = spawn_ipython(local_env)
    yield child
    child.terminate(force=True)

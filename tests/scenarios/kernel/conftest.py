"""A terminal or kernel with no Jupyter server behind it, against the emulator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ...conftest import emulator_env
from ...parts.kernels import spawn_ipython

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def local_env(emulator, client_secret) -> dict[str, str]:
    """The environment of a terminal or kernel that has no Jupyter server behind it."""
    return emulator_env(
        emulator,
        client_secret,
        BROWSER="true",  # the system browser opener does nothing: the test is the browser
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )


@pytest.fixture
def ipython(local_env):
    """Terminal IPython with the extension loaded, in the ``local_env`` environment."""
    child = spawn_ipython(local_env)
    yield child
    child.terminate(force=True)

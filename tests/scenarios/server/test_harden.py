"""A running Jupyter server with ts_notebook is not dumpable, so another process of the same
user cannot read its memory or /proc/<pid>/environ. (What that stops, with two forked
processes: tests/unit/server/test_harden.py.)"""

from __future__ import annotations

import sys

import pytest

from ts_notebook.server import harden

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")


@pytest.fixture
def dumpable_process():
    harden._prctl(harden.PR_SET_DUMPABLE, 1)  # undo any earlier server in this test process


def test_the_running_server_is_not_dumpable(dumpable_process, server):
    assert not harden.is_dumpable()

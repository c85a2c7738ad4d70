"""The JupyterLab extension follows the server with the kernels' long-poll: its numbers in
labextension/src/follow.ts are those of ts_notebook.longpoll, so the two back off alike."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ts_notebook import backoff, longpoll

FOLLOW = Path(__file__).resolve().parents[2] / "labextension" / "src" / "follow.ts"


def ts_constants() -> dict[str, float]:
    text = FOLLOW.read_text()
    return {name: float(value) for name, value in re.findall(r"export const (\w+) = ([\d.]+);", text)}


@pytest.mark.parametrize(
    "name", ["LONGPOLL", "LONGPOLL_GRACE", "RETRY_FIRST", "RETRY_MOST", "RESTART_STEP", "OUTAGE_WAIT"]
)
def test_the_frontend_long_polls_and_backs_off_as_the_kernels_do(name):
    assert ts_constants()[name] == getattr(longpoll, name)


def test_the_frontend_backoff_is_backoff_delay():
    text = FOLLOW.read_text()
    assert f"Math.min(Math.max(failures, 1) - 1, {backoff.MAX_DOUBLINGS})" in text
    assert ts_constants()["QUIET_WAIT"] >= 1.0  # never more than one ask a second

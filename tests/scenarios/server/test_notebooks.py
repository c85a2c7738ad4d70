"""The shipped notebooks run headless (nbclient) against the emulator after a scripted sign-in,
with a kernel of a real Jupyter server's broker, and show what they promise."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from ...parts.browser import Browser
from ...parts.waiting import eventually_sync

ROOT = Path(__file__).resolve().parents[3]


def run_notebook(name: str, server, emulator, tmp_path) -> nbformat.NotebookNode:
    emulator.configure_streams(interval=0.05, heartbeat=5.0, goaway_after=None, rechunk_seed=11)
    browser = Browser(server.url, server.token)
    browser.sign_in_to_jupyter()
    assert "Signed in" in browser.sign_in_to_tradestation(f"{server.url}ts_notebook/login").text
    runtime_file = next(server.runtime_dir.glob("ts_notebook-*.json"))
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    env = {**os.environ, "TS_NOTEBOOK_BROKER": str(runtime_file)}  # a kernel of that server
    client.execute(env=env)
    return nb


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def text_of(nb: nbformat.NotebookNode) -> str:
    parts = []
    for o in outputs(nb):
        parts.append(o.get("text", ""))
        parts += [str(v) for k, v in o.get("data", {}).items() if k.startswith("text/")]
    return "\n".join(parts)


def test_the_quickstart_runs_end_to_end(server_process, emulator, tmp_path):
    nb = run_notebook("quickstart", server_process("ipv4"), emulator, tmp_path)

    assert [o for o in outputs(nb) if o.output_type == "error"] == []
    assert sum("image/png" in o.get("data", {}) for o in outputs(nb)) == 2  # the bar chart, the universe
    # ts.download's progress: tqdm's notebook bar (a widget) with the symbols done and the bars.
    download = next(c for c in nb.cells if "ts.download(" in c.source)
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in download.outputs)
    text = text_of(nb)
    assert "(120, " in text  # bars.shape
    assert "(250, 6)" in text  # ts.download's closes of six symbols, one column each
    assert "ImpliedVolatility" in text and "Call" in text and "Put" in text  # the option chain
    assert "11111111" in text and "MarketValue" in text  # accounts and positions as frames
    assert "lacks the Trade scope" in text and '%ts_login --scopes "' in text
    assert "Signed out of TradeStation (the sign-in was revoked)." in text  # %ts_logout at the end
    assert not [s for s in emulator.issued_secrets() if s in nbformat.writes(nb)]  # nothing secret saved
    eventually_sync(lambda: emulator.streams_open == 0, what="the watch let go when the kernel stopped")


def test_the_streaming_notebook_plots_a_bar_stream(server_process, emulator, tmp_path):
    nb = run_notebook("streaming", server_process("ipv4"), emulator, tmp_path)

    assert [o for o in outputs(nb) if o.output_type == "error"] == []
    assert any("image/png" in o.get("data", {}) for o in outputs(nb))
    assert int(nb.cells[-1].outputs[0]["data"]["text/plain"]) >= 55


@pytest.mark.parametrize("name", ["quickstart", "streaming"])
def test_the_notebooks_are_saved_without_outputs(name):
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")

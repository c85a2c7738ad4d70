"""The README's main job: ``python -m ts_notebook`` runs JupyterLab on the emulator, and the
installed package enables its server extension with no further step.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from ts_notebook.launch import free_port

from .parts import Browser

ROOT = Path(__file__).resolve().parent.parent


def test_the_installed_package_enables_its_server_extension():
    out = subprocess.run(
        [sys.executable, "-m", "jupyter", "server", "extension", "list"], capture_output=True, text=True, timeout=120
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    assert re.search(r"ts_notebook enabled", text) and re.search(r"ts_notebook \S+ OK", text), text


@pytest.fixture
def launched(tmp_path):
    """``python -m ts_notebook lab`` as a process; yields it, its URL, token and log reader."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TS_")}
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path)  # keep the runtime file away from the user's
    log_path = tmp_path / "lab.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ts_notebook", "lab", "--no-browser", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        token = None
        deadline = time.monotonic() + 120
        while token is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            m = re.search(rf"http://127\.0\.0\.1:{port}/lab\S*\?token=(\w+)", log_path.read_text())
            token = m.group(1) if m else None
        assert token, "JupyterLab did not start"
        yield SimpleNamespace(
            proc=proc, url=f"http://127.0.0.1:{port}/", token=token, log=log_path.read_text, runtime_dir=tmp_path
        )
    finally:
        if proc.poll() is None:
            proc.terminate()  # the launcher stops Jupyter, then itself; SIGKILL would orphan Jupyter
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_python_m_ts_notebook_serves_lab_on_the_emulator_and_signs_in(launched):
    base, token = launched.url, launched.token
    assert (
        requests.get(f"{base}lab/tree/notebooks/quickstart.ipynb", params={"token": token}, timeout=30).status_code
        == 200
    )

    browser = Browser(base, token)
    browser.sign_in_to_jupyter()
    page = browser.sign_in_to_tradestation("ts_notebook/login")

    assert page.status_code == 200 and "Signed in to TradeStation as analyst" in page.text
    status = browser.http.get(f"{base}ts_notebook/api/status", timeout=10).json()
    assert status["signed_in"] is True and status["api_url"].startswith("http://127.0.0.1:")
    assert "No TS_CLIENT_ID set: using the TradeStation emulator" in launched.log()
    assert "Traceback" not in launched.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_stop_signal_stops_jupyter_first_then_the_emulator(launched, sig):
    jupyter_pid = json.loads(next(launched.runtime_dir.glob("jpserver-*.json")).read_text())["pid"]
    emulator_url = re.search(r"emulator at (http://\S+) ", launched.log()).group(1)
    assert jupyter_pid != launched.proc.pid and requests.get(f"{emulator_url}/.well-known/jwks.json", timeout=10).ok

    launched.proc.send_signal(sig)  # what `docker stop` (SIGTERM) or a supervisor sends this process alone

    assert launched.proc.wait(timeout=60) == 0
    assert not Path(f"/proc/{jupyter_pid}").exists() or "zombie" in Path(f"/proc/{jupyter_pid}/status").read_text()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{emulator_url}/.well-known/jwks.json", timeout=10)
    assert "Traceback" not in launched.log()

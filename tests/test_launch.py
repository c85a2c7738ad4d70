"""The README's main job: ``python -m ts_notebook`` runs JupyterLab on the emulator, and the
installed package enables its server extension with no further step.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import requests

from ts_notebook.launch import free_port

from .parts import Browser

ROOT = Path(__file__).resolve().parent.parent


def test_the_installed_package_enables_its_server_extension():
    out = subprocess.run([sys.executable, "-m", "jupyter", "server", "extension", "list"],
                         capture_output=True, text=True, timeout=120)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    assert re.search(r"ts_notebook enabled", text) and re.search(r"ts_notebook \S+ OK", text), text


def test_python_m_ts_notebook_serves_lab_on_the_emulator_and_signs_in(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TS_")}
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path)  # keep the runtime file away from the user's
    log = open(tmp_path / "lab.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "ts_notebook", "lab", "--no-browser", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        token = None
        deadline = time.monotonic() + 120
        while token is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            log.seek(0)
            m = re.search(rf"http://127\.0\.0\.1:{port}/lab\S*\?token=(\w+)", log.read())
            token = m.group(1) if m else None
        assert token, "JupyterLab did not start"
        base = f"http://127.0.0.1:{port}/"
        assert requests.get(f"{base}lab/tree/notebooks/quickstart.ipynb", params={"token": token},
                            timeout=30).status_code == 200

        browser = Browser(base, token)
        browser.sign_in_to_jupyter()
        page = browser.sign_in_to_tradestation("ts_notebook/login")

        assert page.status_code == 200 and "Signed in to TradeStation as analyst" in page.text
        status = browser.http.get(f"{base}ts_notebook/api/status", timeout=10).json()
        assert status["signed_in"] is True and status["api_url"].startswith("http://127.0.0.1:")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.seek(0)
        text = log.read()
        log.close()
    assert "No TS_CLIENT_ID set: using the TradeStation emulator" in text
    assert "Traceback" not in text

"""The README's main job: ``python -m ts_notebook`` runs JupyterLab on the emulator, and the
installed package enables its server extension with no further step.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from ts_notebook.launch import free_port

from ..parts.browser import Browser, note_browser, opened_address
from ..parts.kernels import environ_without_settings
from ..parts.waiting import eventually_sync

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_package_enables_its_server_extension():
    out = subprocess.run(
        [sys.executable, "-m", "jupyter", "server", "extension", "list"], capture_output=True, text=True, timeout=120
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    assert re.search(r"ts_notebook enabled", text) and re.search(r"ts_notebook \S+ OK", text), text


@pytest.fixture
def launched(tmp_path, request):
    """``python -m ts_notebook lab --no-browser`` as a process; yields it, the address it
    printed, its token, log reader and home folder."""
    port, app = free_port(), getattr(request, "param", "lab")  # lab unless a test asks for notebook
    home = tmp_path / "home"
    home.mkdir()
    env = environ_without_settings()
    env.update(
        HOME=str(home),  # the working copy of the notebooks goes here
        JUPYTER_RUNTIME_DIR=str(tmp_path),  # keep the runtime file away from the user's
        BROWSER=str(note_browser(tmp_path / "browser", tmp_path / "opened.txt")),
    )
    log_path = tmp_path / "lab.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ts_notebook", app, "--no-browser", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        opened = None
        deadline = time.monotonic() + 120
        while opened is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            opened = re.search(rf"ts_notebook: open (http://127\.0\.0\.1:{port}/\S+)", log_path.read_text())
        assert opened, "JupyterLab did not start: " + log_path.read_text()[-2000:]
        url = opened.group(1)
        yield SimpleNamespace(
            proc=proc,
            url=f"http://127.0.0.1:{port}/",
            opened=url,
            token=url.split("?token=")[1],
            log=log_path.read_text,
            runtime_dir=tmp_path,
            home=home,
            browser_saw=tmp_path / "opened.txt",
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
    assert launched.opened == f"{base}lab/tree/quickstart.ipynb?token={token}"  # as jupyter lab FILE opens it
    assert requests.get(launched.opened, timeout=30).status_code == 200
    assert not launched.browser_saw.exists()  # --no-browser

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


def test_the_notebooks_run_from_a_working_copy_so_the_shipped_ones_stay_as_they_are(launched):
    shipped = (ROOT / "notebooks" / "quickstart.ipynb").read_bytes()
    headers = {"Authorization": f"token {launched.token}"}
    model = requests.get(f"{launched.url}api/contents/quickstart.ipynb", headers=headers, timeout=30).json()
    model["content"]["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "ran\n"}]
    model["content"]["cells"][1]["execution_count"] = 1
    saved = requests.put(
        f"{launched.url}api/contents/quickstart.ipynb",
        headers=headers,
        json={"type": "notebook", "format": "json", "content": model["content"]},
        timeout=30,
    )

    assert saved.status_code == 200, saved.text
    assert (ROOT / "notebooks" / "quickstart.ipynb").read_bytes() == shipped
    assert '"ran\\n"' in (launched.home / "ts_notebook-notebooks" / "quickstart.ipynb").read_text()


@pytest.mark.parametrize("launched", ["notebook"], indirect=True)
def test_python_m_ts_notebook_notebook_opens_the_quickstart_in_notebook_7(launched):
    assert launched.opened == f"{launched.url}notebooks/quickstart.ipynb?token={launched.token}"
    page = requests.get(launched.opened, timeout=30)
    assert page.status_code == 200 and "Jupyter Notebook" in page.text


def test_the_browser_is_opened_through_a_private_page_never_with_the_token_on_a_command_line(tmp_path):
    home, noted = tmp_path / "home", tmp_path / "opened.txt"
    home.mkdir()
    env = environ_without_settings()
    env.update(
        HOME=str(home),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        BROWSER=str(note_browser(tmp_path / "browser", noted)),  # writes down its command line's address
    )
    log_path = tmp_path / "launch.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ts_notebook", "lab", "--port", str(free_port())],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        eventually_sync(lambda: noted.exists() and noted.read_text(), timeout=120, what="the browser was opened")
        printed = re.search(r"ts_notebook: open (\S+)", log_path.read_text()).group(1)
        on_the_command_line, page = noted.read_text(), Path(urlsplit(noted.read_text()).path)

        # Every local user can read /proc/PID/cmdline; the page is this user's alone.
        assert parse_qs(urlsplit(printed).query)["token"][0] not in on_the_command_line
        assert on_the_command_line.startswith("file://") and page.stat().st_mode & 0o077 == 0
        assert opened_address(noted) == printed
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert not page.exists()  # gone with the launcher

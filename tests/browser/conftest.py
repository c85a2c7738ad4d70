"""Real browser tests: Debian's Chromium driven by Playwright, against a Jupyter server
started as a process with the installed extension, and the emulator as TradeStation.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import requests

from ts_notebook.launch import free_port

from ..conftest import emulator_env

CHROMIUM = os.environ.get("TS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Screenshots a person can look at after a run.
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of Debian's Chromium; in CI its absence fails instead of skipping."""
    if not (os.path.exists(CHROMIUM) and shutil.which(CHROMIUM)):
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is missing at {CHROMIUM}: .ci/run installs it with apt-get install -y chromium")
        pytest.skip(f"Chromium is missing at {CHROMIUM}: install it with `apt-get install -y chromium`")
    return CHROMIUM


@pytest.fixture
def artifacts(request) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@dataclass
class JupyterProcess:
    """A Jupyter server (lab or notebook) running as a child process."""

    app: str
    url: str
    token: str
    root: Path
    log: Path
    proc: subprocess.Popen

    def notebook_url(self, name: str) -> str:
        path = "lab/tree" if self.app == "lab" else "notebooks"
        return f"{self.url}{path}/{name}?token={self.token}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def write_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("")]
    nbformat.write(nb, path)


def quiet_lab(tmp_path: Path) -> None:
    """No news fetch and no "get notified about news?" toast over the cells."""
    config = tmp_path / "config"
    config.mkdir()
    for name in ("jupyter_server_config.py", "jupyter_lab_config.py", "jupyter_notebook_config.py"):
        (config / name).write_text("c.LabApp.news_url = None\n")
    notification = tmp_path / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    # The notebook names its kernel: start it without asking, as a returning user has chosen.
    tracker = tmp_path / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text('{"autoStartDefaultKernel": true}')


@pytest.fixture(params=["lab", "notebook"])
def jupyter(request, emulator, client_secret, tmp_path):
    """``jupyter lab`` or ``jupyter notebook`` with ts_notebook enabled by its install alone."""
    yield from run_jupyter(sys.executable, request.param, emulator, client_secret, tmp_path)


def run_jupyter(python: str, app: str, emulator, client_secret: str, tmp_path: Path, **env_more: str):
    """Start ``python -m jupyter APP`` against the emulator; yield it running, then stop it."""
    port = free_port()
    token = secrets.token_hex(16)
    root = tmp_path / "root"
    root.mkdir()
    write_notebook(root / "signin.ipynb")
    emulator.add_redirect_uri(f"http://127.0.0.1:{port}/ts_notebook/callback")
    env = emulator_env(
        emulator,
        client_secret,
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"),
        **env_more,
    )
    quiet_lab(tmp_path)
    log = tmp_path / f"{app}.log"
    cmd = [
        python,
        "-m",
        "jupyter",
        app,
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--log-level=DEBUG",
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}api/status", params={"token": token}, timeout=5).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert proc.poll() is None, log.read_text()
        time.sleep(0.3)
    else:
        proc.terminate()
        pytest.fail(f"jupyter {app} did not start:\n{log.read_text()[-3000:]}")
    yield JupyterProcess(app, url, token, root, log, proc)
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def wheel_python(tmp_path_factory) -> str:
    """The Python of a new venv holding only ts_notebook's wheel (with its prebuilt JupyterLab
    extension), JupyterLab and Notebook 7: installed as a user would, never editable. The
    wheel is .ci/run's (TEST_WHEEL), else one built here."""
    where = tmp_path_factory.mktemp("wheel-venv")
    wheel = os.environ.get("TEST_WHEEL")
    if not wheel:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(where / "dist"), str(ROOT)],
            check=True,
            timeout=600,
        )
        wheel = str(next((where / "dist").glob("ts_notebook-*.whl")))
    venv_dir = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv_dir)], check=True, timeout=120)
    python = str(venv_dir / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    pip = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel, "jupyterlab>=4", "notebook>=7"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    return python


@pytest.fixture(params=["lab", "notebook"])
def jupyter_from_wheel(request, wheel_python, emulator, client_secret, tmp_path):
    """``jupyter lab`` or ``jupyter notebook`` from the wheel's venv (see ``wheel_python``)."""
    yield from run_jupyter(wheel_python, request.param, emulator, client_secret, tmp_path)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when == "call":
        item.failed_call = outcome.get_result().failed


@pytest.fixture
def browser(request, chromium, tmp_path):
    """A fresh Chromium profile, driven by Playwright's sync API. A failed test leaves a
    screenshot of every tab in the artifacts folder."""
    from playwright.sync_api import sync_playwright

    args = list(CHROMIUM_ARGS)
    if request.node.get_closest_marker("no_localhost"):
        # As from a container or over an SSH tunnel: "localhost" leads nowhere (the notebook
        # and the emulator are on 127.0.0.1, so only the loopback callback is cut off).
        args.append("--host-resolver-rules=MAP localhost ~NOTFOUND")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium,
            headless=True,
            args=args,
            viewport={"width": 1200, "height": 800},
        )
        context.set_default_timeout(60_000)
        yield context
        if getattr(request.node, "failed_call", False):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"\W+", "-", request.node.name)
            for i, page in enumerate(context.pages):
                page.screenshot(path=ARTIFACTS / f"FAILED-{name}-tab{i}.png", full_page=True)
        context.close()


def secrets_in(text: str, emulator) -> list[str]:
    """Which of the emulator's secrets appear in ``text`` (only their count is reported)."""
    return [s for s in emulator.issued_secrets() if s and s in text]


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)

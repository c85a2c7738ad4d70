"""The README's first command, word for word, in a brand-new virtual environment: it installs
everything the shipped notebooks use (the test extra never comes into it), opens the
quickstart, and both notebooks run there against the emulator with no error output."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import venv
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .parts.browser import Browser, note_browser, opened_address
from .parts.kernels import environ_without_settings

ROOT = Path(__file__).resolve().parent.parent

# Run in the venv's own Python: nbclient comes with the main job's install (through
# jupyter_server and nbconvert), so nothing of the test extra is needed to run a notebook.
RUN_NOTEBOOK = """
import sys, nbformat
from nbclient import NotebookClient
path, out = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
NotebookClient(nb, timeout=180, kernel_name="python3", allow_errors=True).execute()
nbformat.write(nb, out)
"""


def readme_main_job() -> str:
    """The first command under the README's "On a fresh machine"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## On a fresh machine", 1)[1]
    return re.search(r"```bash\n(.+?)\n```", section, re.S).group(1).strip()


def problems(nb: dict) -> list[str]:
    """Every error output and everything written to stderr, cell by cell."""
    found = []
    for n, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            if out["output_type"] == "error":
                found.append(f"cell {n}: {out['ename']}: {out['evalue']}")
            elif out["output_type"] == "stream" and out["name"] == "stderr":
                found.append(f"cell {n} wrote to stderr: {out['text'][:300]}")
    return found


@pytest.fixture
def main_job(tmp_path):
    """The README's command run in a new venv as a person would; yields where things are."""
    command = readme_main_job()
    assert command.startswith("pip install") and "python -m ts_notebook" in command, command
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    home, opened = tmp_path / "home", tmp_path / "opened.txt"
    home.mkdir()
    env = environ_without_settings()
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "JUPYTER_PATH", "JUPYTER_CONFIG_PATH"):
        env.pop(name, None)
    env.update(
        HOME=str(home),
        PATH=f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}",
        VIRTUAL_ENV=str(env_dir),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_DATA_DIR=str(home / "jupyter-data"),
        JUPYTER_CONFIG_DIR=str(home / "jupyter-config"),
        BROWSER=str(note_browser(tmp_path / "browser", opened)),
    )
    log_path = tmp_path / "main-job.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            ["bash", "-c", command], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 600  # a cold pip cache downloads JupyterLab and pandas
        while not (opened.exists() and opened.read_text()) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert opened.exists(), f"no browser was opened; the log ends:\n{log_path.read_text()[-3000:]}"
        yield env_dir, env, opened_address(opened), home, tmp_path, log_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the launcher stops Jupyter, then the emulator
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.timeout(900)
def test_the_readme_main_job_in_a_new_venv_runs_both_notebooks_without_an_error(main_job):
    env_dir, env, url, home, tmp_path, log_path = main_job
    parts = urlsplit(url)
    assert parts.path == "/lab/tree/quickstart.ipynb" and parts.query.startswith("token="), url
    python = env_dir / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, timeout=120, env=env
    )
    names = {p["name"].lower() for p in json.loads(installed.stdout)}
    assert {"pandas", "matplotlib", "mplfinance", "jupyterlab", "notebook"} <= names
    assert not {"pytest", "playwright"} & names  # the test extra is not what makes it work

    base = f"{parts.scheme}://{parts.netloc}/"
    browser = Browser(base, parts.query.removeprefix("token="))
    browser.sign_in_to_jupyter()
    assert "Signed in to TradeStation" in browser.sign_in_to_tradestation("ts_notebook/login").text
    workdir = home / "ts_notebook-notebooks"
    broker = next((tmp_path / "runtime").glob("ts_notebook-*.json"))
    kernel_env = {**env, "TS_NOTEBOOK_BROKER": str(broker)}  # a kernel of that server, as Lab starts it

    for name in ("streaming", "quickstart"):  # the quickstart ends by signing out
        out = tmp_path / f"{name}-run.ipynb"
        run = subprocess.run(
            [str(python), "-c", RUN_NOTEBOOK, str(workdir / f"{name}.ipynb"), str(out)],
            cwd=workdir,
            env=kernel_env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        nb = json.loads(out.read_text())
        assert problems(nb) == [], name
        assert any("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", [])), name
    assert "Traceback" not in log_path.read_text()

"""The launcher (``python -m ts_notebook``) short of starting Jupyter: its working copy of the
shipped notebooks, the address it opens, its help, and a working folder it refuses. (Running
JupyterLab and Notebook 7 on the emulator: tests/scenarios/test_launch.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ts_notebook.launch import address, working_copy

from ..parts.kernels import environ_without_settings

ROOT = Path(__file__).resolve().parents[2]


def test_a_working_copy_already_there_is_kept(tmp_path):
    (tmp_path / "quickstart.ipynb").write_text("{}")  # the analyst's own changes

    assert working_copy(tmp_path) == tmp_path
    assert (tmp_path / "quickstart.ipynb").read_text() == "{}"
    assert (tmp_path / "streaming.ipynb").read_bytes() == (ROOT / "notebooks" / "streaming.ipynb").read_bytes()


def test_help_is_plain_text():
    out = subprocess.run(
        [sys.executable, "-m", "ts_notebook", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout

    assert "``" not in out and "emulator" in out and "--workdir" in out


def test_a_link_planted_in_the_working_folder_is_not_written_through(tmp_path):
    folder, target = tmp_path / "notebooks", tmp_path / "elsewhere" / "authorized_keys"
    folder.mkdir(mode=0o700)
    target.parent.mkdir()
    (folder / "quickstart.ipynb").symlink_to(target)  # dangling: it does not "exist"

    working_copy(folder)

    assert not target.exists()


def test_a_working_folder_others_may_write_is_refused_with_what_to_do(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "quickstart.ipynb").write_text("{}")  # someone else's notebook, waiting to be opened
    shared.chmod(0o777)
    env = {**environ_without_settings(), "HOME": str(tmp_path), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}

    done = subprocess.run(
        [sys.executable, "-m", "ts_notebook", "--no-browser", "--workdir", str(shared)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2 and f"chmod go-w {shared}" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "runtime").exists()  # nothing was started


def test_the_address_carries_a_token_with_url_characters_whole():
    url = address("lab", {"url": "http://127.0.0.1:8888/", "token": "a#b&c d"}, "quickstart.ipynb")

    assert parse_qs(urlsplit(url).query)["token"] == ["a#b&c d"]

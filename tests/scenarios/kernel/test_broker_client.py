"""A kernel whose broker is missing, gone or of another version says so in one line, then
signs in within its own process (here it has no key either, which it also says in a line)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from ts_notebook.protocol import ENV_VAR


def ipython(code: str, env_file: str | None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a real IPython process, as a terminal user would."""
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    if env_file is not None:
        env[ENV_VAR] = env_file
    return subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def runtime_file(tmp_path):
    def write(**info):
        path = tmp_path / f"ts_notebook-{info['protocol']}.json"
        path.write_text(json.dumps(info))
        return str(path)

    return write


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no-variable", None),
        ("missing-file", "The Jupyter server that started this kernel is gone"),
        ("other-version", "runs another version of ts_notebook"),
        ("stopped-server", "The Jupyter server that started this kernel has stopped"),
    ],
    ids=lambda v: v if v and " " not in v else "",
)
def test_without_a_live_broker_each_problem_is_one_line_that_says_what_to_do(runtime_file, tmp_path, case, message):
    env_file = {
        "no-variable": None,
        "missing-file": str(tmp_path / "gone.json"),
        "other-version": runtime_file(protocol=99, url="http://127.0.0.1:1/", key="k"),
        "stopped-server": runtime_file(
            protocol=1, url=f"http://127.0.0.1:{closed_port()}/", base_url="/", key="k", pid=dead_pid()
        ),
    }[case]

    result = ipython("%load_ext ts_notebook\n%ts_login", env_file)

    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stdout + result.stderr
    assert all(line.startswith("ts_notebook: ") for line in lines)  # one line per message
    assert (
        lines[-1] == "ts_notebook: No TradeStation API key is set. Set TS_CLIENT_ID (and TS_CLIENT_SECRET) "
        "in the environment that starts Jupyter (or IPython), or c.TSNotebook.client_id in jupyter_server_config.py."
    )
    if message:
        assert len(lines) == 2 and message in lines[0] and lines[0].endswith("Signing in within this process instead.")
    else:
        assert len(lines) == 1


def test_a_live_server_that_does_not_answer_is_retried_then_named_never_replaced(runtime_file):
    # The file's server process runs (this test's), but nothing listens at its URL.
    url = f"http://127.0.0.1:{closed_port()}/"
    env_file = runtime_file(protocol=1, url=url, base_url="/", key="k", pid=os.getpid())

    result = ipython("%load_ext ts_notebook\n%ts_login\n%ts_status", env_file)

    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stdout + result.stderr
    assert len(lines) == 2 and lines[0] == lines[1], lines  # said again: the second command retried
    assert lines[0].startswith(
        f"ts_notebook: This kernel's Jupyter server is running but did not answer at {url} "
        "(Connection refused; tried 6 times over 8 s)."
    )
    assert "No TradeStation API key" not in result.stderr  # no in-process sign-in was tried


def test_importing_the_package_is_cheap():
    code = (
        "import sys, ts_notebook\n"
        "print([m for m in ('requests', 'jupyter_server', 'ipywidgets', 'tornado', 'jwt', 'traitlets', 'pandas', "
        "'matplotlib', 'keyring', 'filelock') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr

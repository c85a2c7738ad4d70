"""What the benchmarks share: the emulator's settings for a real `jupyter server` with
ts_notebook, started as a process, and its runtime file."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

from ts_notebook.config import Settings
from ts_notebook.emulator import Emulator
from ts_notebook.kernel.local import LocalSource
from ts_notebook.launch import free_port
from ts_notebook.protocol import RuntimeInfo


def server_env(em: Emulator, secret: str, tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a server (and the kernels it starts) signed in against ``em``."""
    return {
        **os.environ,
        "TS_CLIENT_ID": em.client_id,
        "TS_CLIENT_SECRET": secret,
        "TS_SIGNIN_URL": em.url,
        "TS_API_URL": f"{em.url}/v3",
        "TS_SIM_API_URL": f"{em.url}/sim/v3",
        "JUPYTER_RUNTIME_DIR": str(tmp),
        **extra,
    }


def start_server(
    em: Emulator, secret: str, tmp: Path, port: int | None = None, **extra: str
) -> tuple[subprocess.Popen, str, str, RuntimeInfo]:
    """A `jupyter server` with ts_notebook; returns it, its URL, its token and runtime info."""
    port, token = port or free_port(), secrets.token_hex(16)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "server",
            "--allow-root",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={tmp}",
        ],
        env=server_env(em, secret, tmp, **extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    for _ in range(300):
        files = list(tmp.glob("ts_notebook-*.json"))
        try:
            if files and requests.get(f"{url}api/status", params={"token": token}, timeout=2).ok:
                return proc, url, token, RuntimeInfo.read(files[0])
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit("jupyter server did not start")


def signed_in_source(em: Emulator, secret: str) -> LocalSource:
    """An in-process token source signed in through the emulator's real sign-in page."""
    source = LocalSource(
        Settings.load(
            environ={},
            client_id="bench",
            client_secret=secret,
            signin_url=em.url,
            api_url=f"{em.url}/v3",
            sim_api_url=f"{em.url}/sim/v3",
        )
    )
    pending = source.client.begin_login("http://localhost:31022")
    query = {k: v[0] for k, v in parse_qs(urlsplit(pending.authorize_url).query).items()}
    r = requests.post(
        f"{em.url}/authorize",
        data={**query, "username": "bench", "decision": "allow"},
        allow_redirects=False,
        timeout=10,
    )
    code = parse_qs(urlsplit(r.headers["Location"]).query)["code"][0]
    source.complete_login(pending, code)
    return source

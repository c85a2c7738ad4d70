"""``python -m ts_notebook``: JupyterLab (or Notebook 7) with ts_notebook, ready to sign in.

With ``TS_CLIENT_ID`` set it signs in to TradeStation. Without it, it starts the built-in
emulator on loopback with a fresh random client secret and points the extension at it, so
the whole flow can be tried with no account.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from .protocol import CALLBACK

QUICKSTART = Path("notebooks") / "quickstart.ipynb"


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; see ``python -m ts_notebook --help``."""
    parser = argparse.ArgumentParser(prog="python -m ts_notebook", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "app", nargs="?", choices=["lab", "notebook"], default="lab", help="JupyterLab (default) or Jupyter Notebook 7"
    )
    parser.add_argument("--port", type=int, default=0, help="Jupyter's port (default: a free one)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    parser.add_argument(
        "path",
        nargs="?",
        default=str(QUICKSTART) if QUICKSTART.exists() else None,
        help="notebook to open (default: notebooks/quickstart.ipynb when present)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run Jupyter in the foreground until it stops; returns its exit status."""
    args = parse_args(argv)
    port = args.port or free_port()
    env = dict(os.environ)
    emulator = None
    if not env.get("TS_CLIENT_ID"):
        from .emulator import Emulator

        secret = secrets.token_urlsafe(24)  # fresh each run: nothing to leak, nothing committed
        emulator = Emulator(client_id="emulator-client", client_secret=secret).start()
        for host in ("127.0.0.1", "localhost"):
            emulator.add_redirect_uri(f"http://{host}:{port}/{CALLBACK}")
        env.update(
            TS_CLIENT_ID="emulator-client",
            TS_CLIENT_SECRET=secret,
            TS_SIGNIN_URL=emulator.url,
            TS_API_URL=f"{emulator.url}/v3",
            TS_SIM_API_URL=f"{emulator.url}/sim/v3",
        )
        print(
            f"No TS_CLIENT_ID set: using the TradeStation emulator at {emulator.url} (sign in with any username).",
            flush=True,
        )
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        args.app,
        f"--port={port}",
        "--port-retries=0",
        "--ip=127.0.0.1",
        "--ServerApp.open_browser=" + str(not args.no_browser),
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    if args.path:
        cmd.append(args.path)
    proc = subprocess.Popen(cmd, env=env)
    previous = {sig: signal.signal(sig, _stopper(proc)) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if emulator is not None:
            emulator.stop()  # only once Jupyter is gone: it may still be signing someone out


def _stopper(proc: subprocess.Popen) -> Any:
    """A signal handler that stops Jupyter cleanly (SIGTERM), or at once if asked twice.

    ``docker stop`` and service managers send SIGTERM to this process only; Ctrl-C in a
    terminal sends SIGINT to both. Either way Jupyter gets a clean SIGTERM, and this process
    waits for it before stopping the emulator.
    """
    asked = []

    def stop(signum: int, frame: Any) -> None:
        if proc.poll() is None and asked:
            proc.kill()
        elif proc.poll() is None:
            proc.terminate()
        asked.append(signum)

    return stop

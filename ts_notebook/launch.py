"""python -m ts_notebook: JupyterLab (or Notebook 7) with ts_notebook, ready to sign in.

With ``TS_CLIENT_ID`` set it signs in to TradeStation. Without it, it starts the built-in
emulator on loopback with a fresh random client secret and points the extension at it, so
the whole flow can be tried with no account.

The example notebooks are opened from a working copy (``~/ts_notebook-notebooks`` unless
``--workdir`` says otherwise), so running them never changes the files the package ships.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .browser import open_privately
from .errors import ConfigError
from .protocol import CALLBACK

DESCRIPTION = (
    "JupyterLab (or Jupyter Notebook 7) with ts_notebook, opening the quickstart notebook. "
    "With no TS_CLIENT_ID set it runs against the built-in TradeStation emulator (any username signs in)."
)
EXAMPLES = ("quickstart.ipynb", "streaming.ipynb")
WORKDIR = Path("~/ts_notebook-notebooks")
# How long Jupyter may take to start and write its server file before the launcher gives up.
START_TIMEOUT = 120.0


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def shipped_notebooks() -> Path | None:
    """The folder of example notebooks: inside the installed package (a wheel), or beside it
    in a source checkout (an editable install)."""
    here = Path(__file__).resolve().parent
    for folder in (here / "notebooks", here.parent / "notebooks"):
        if (folder / EXAMPLES[0]).is_file():
            return folder
    return None


def working_copy(workdir: Path) -> Path | None:
    """``workdir`` with the example notebooks in it, copied once: a copy already there (with
    your changes) is kept. None when the package ships no notebooks.

    Raises:
        ConfigError: ``workdir`` is not this user's alone (another user could plant a notebook
            there, or a link the copy would be written through).
    """
    source = shipped_notebooks()
    if source is None:
        return None
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_own_folder(workdir)
    for name in EXAMPLES:
        if not (source / name).is_file():
            continue
        try:  # never through a link, never over what is there
            fd = os.open(workdir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as copy:
            copy.write((source / name).read_bytes())
    return workdir


def check_own_folder(folder: Path) -> None:
    """Refuse a folder another user owns or may write (on systems with such modes).

    Raises:
        ConfigError: saying which, and what to do.
    """
    if os.name != "posix":
        return
    st = folder.stat()
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise ConfigError(
            f"{folder} belongs to another user or others may write to it, so the notebooks are not "
            f"opened from it. Run: chmod go-w {folder}, or choose your own folder with --workdir."
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; see ``python -m ts_notebook --help``."""
    parser = argparse.ArgumentParser(prog="python -m ts_notebook", description=DESCRIPTION)
    parser.add_argument(
        "app", nargs="?", choices=["lab", "notebook"], default="lab", help="JupyterLab (default) or Jupyter Notebook 7"
    )
    parser.add_argument("--port", type=int, default=0, help="Jupyter's port (default: a free one)")
    parser.add_argument("--no-browser", action="store_true", help="print the address to open, do not open a browser")
    parser.add_argument(
        "--workdir",
        default=str(WORKDIR),
        help=f"where the example notebooks are copied and opened (default: {WORKDIR}; a copy there is kept)",
    )
    parser.add_argument("path", nargs="?", default=None, help="a notebook to open instead of the quickstart")
    return parser.parse_args(argv)


def what_to_open(args: argparse.Namespace) -> tuple[Path, str | None]:
    """Jupyter's root folder and the notebook to open in it (relative, or None)."""
    if args.path:
        path = Path(args.path).expanduser().resolve()
        return (path, None) if path.is_dir() else (path.parent, path.name)
    folder = working_copy(Path(args.workdir).expanduser())
    if folder is None:
        return Path.cwd(), None
    return folder.resolve(), EXAMPLES[0]


def address(app: str, server: dict[str, Any], notebook: str | None) -> str:
    """The address that opens ``notebook`` (or the app's start page) with the server's token."""
    base = server["url"].rstrip("/") + "/"
    if notebook is None:
        page = "lab" if app == "lab" else "tree"
    else:
        page = ("lab/tree/" if app == "lab" else "notebooks/") + quote(notebook)
    return f"{base}{page}?token={quote(server['token'], safe='')}" if server.get("token") else f"{base}{page}"


def wait_for_server(proc: subprocess.Popen, runtime_dir: Path) -> dict[str, Any] | None:
    """The server file Jupyter writes once it listens (its URL and token), or None if it
    stopped or did not start in time. Read from the private runtime folder, so the token is
    never on a command line or in an environment."""
    path = runtime_dir / f"jpserver-{proc.pid}.json"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):  # not written yet, or half written
            time.sleep(0.2)
    return None


def start_emulator(env: dict[str, str], port: int) -> Any:
    """The emulator on loopback, and ``env`` pointed at it; returns it (to stop later)."""
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
    return emulator


def main(argv: list[str] | None = None) -> int:
    """Run Jupyter in the foreground until it stops; returns its exit status."""
    from jupyter_core.paths import jupyter_runtime_dir

    args = parse_args(argv)
    port = args.port or free_port()
    try:
        root, notebook = what_to_open(args)
    except ConfigError as exc:
        print(f"ts_notebook: {exc}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    emulator = None if env.get("TS_CLIENT_ID") else start_emulator(env, port)
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab" if args.app == "lab" else "notebook",  # the server is this process's child
        f"--port={port}",
        "--port-retries=0",
        "--ip=127.0.0.1",
        "--ServerApp.open_browser=False",  # this process opens the notebook, once the server answers
        f"--ServerApp.root_dir={root}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    proc = subprocess.Popen(cmd, env=env)
    page = None
    previous = {sig: signal.signal(sig, _stopper(proc)) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server = wait_for_server(proc, Path(jupyter_runtime_dir()))
        if server is not None:
            url = address(args.app, server, notebook)
            print(f"\nts_notebook: open {url}\n", flush=True)
            if not args.no_browser:
                page = open_privately(url)  # the token never goes on the browser's command line
        return proc.wait()
    finally:
        if page is not None:
            page.unlink(missing_ok=True)
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

"""Opening an address in the system browser without putting it on a command line."""

from __future__ import annotations

import html
import os
import tempfile
import webbrowser
from pathlib import Path


def open_privately(url: str) -> Path | None:
    """Open ``url`` in the system browser through a page only this user can read (mode 0600)
    that sends the browser on, as Jupyter opens its own address: other users of the machine
    can read every command line (``/proc/PID/cmdline``), so an address that carries a secret
    (a one-time sign-in address, Jupyter's token) never goes on one.

    Returns:
        The page; delete it once the browser has surely read it (when the process ends). None
        when no browser could be started here (a server with no desktop).
    """
    fd, path = tempfile.mkstemp(prefix="ts_notebook-open-", suffix=".html")  # mode 0600
    with os.fdopen(fd, "w", encoding="utf-8") as page:
        page.write(f'<!doctype html><meta http-equiv="refresh" content="0;url={html.escape(url)}">')
    if webbrowser.open(Path(path).as_uri()):
        return Path(path)
    Path(path).unlink(missing_ok=True)
    return None

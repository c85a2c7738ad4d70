"""Keep other processes of the same user out of the server's memory, where the OS allows it.

The server holds the client secret and every token. Its environment as it started (which
held ``TS_CLIENT_SECRET`` before the extension removed it) stays readable in
``/proc/<pid>/environ``, and its memory in ``/proc/<pid>/mem``, to any process of the same
user, kernels included. On Linux a non-dumpable process closes both, and ptrace (debuggers,
py-spy) and core dumps with them; children started with exec (kernels, terminals) are
dumpable again. This is defence in depth, not a wall: code running as the user can still read
a mounted secret file, and root can read anything.
"""

from __future__ import annotations

import ctypes
import sys

# <linux/prctl.h>
PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def _prctl(option: int, value: int = 0) -> int:
    # The running program's own symbols include the C library's prctl.
    return int(ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0))


def make_non_dumpable() -> bool:
    """Make this process non-dumpable; True when it now is (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return _prctl(PR_SET_DUMPABLE, 0) == 0
    except OSError:  # no C library to call: an unusual build, nothing to harden with
        return False


def is_dumpable() -> bool:
    """Whether other processes of this user may read this one's memory (always True off Linux)."""
    if not sys.platform.startswith("linux"):
        return True
    return _prctl(PR_GET_DUMPABLE) != 0

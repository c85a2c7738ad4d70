"""How a ts_notebook error raised in a cell is shown: its message (which says what to do
next) in a few lines, not a page of requests' internals; ``%tb`` shows the full traceback."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from ..errors import TSError

FULL_TRACEBACK = "(%tb shows the full traceback)"


def short_traceback(
    shell: Any, etype: type[BaseException], value: BaseException, tb: TracebackType | None, tb_offset: Any = None
) -> list[str]:
    """IPython's custom exception handler for :class:`TSError`: shows the error as
    ``Name: message`` and a pointer to ``%tb``, still as an error (ename and evalue set, so a
    notebook run stops there)."""
    # %tb (and %debug) read these, as after any other error.
    sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb
    if sys.version_info >= (3, 12):
        sys.last_exc = value
    # Written here, not by IPython's formatter, which fails on an error raised from another
    # (``raise ... from exc``, as most of ts_notebook's errors are).
    stb = [f"{etype.__name__}: {value}", *map(str, getattr(value, "__notes__", ())), FULL_TRACEBACK]
    shell._showtraceback(etype, value, stb)  # the hook ipykernel turns into an "error" message
    return stb


def install(shell: Any) -> None:
    """Show every :class:`TSError` raised in a cell of ``shell`` the short way."""
    shell.set_custom_exc((TSError,), short_traceback)

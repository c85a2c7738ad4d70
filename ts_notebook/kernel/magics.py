"""``%ts_login``, ``%ts_logout`` and ``%ts_status``."""

from __future__ import annotations

import sys
from typing import Any

from IPython.core.magic import Magics, line_magic, magics_class

from ..errors import TSError
from . import api


@magics_class
class TSMagics(Magics):
    """TradeStation sign-in magics. A failure prints one line that says what to do."""

    @line_magic
    def ts_login(self, line: str = "") -> None:
        """Show the sign-in button; once signed in, the state and a sign-out button."""
        _say(api.login)

    @line_magic
    def ts_logout(self, line: str = "") -> None:
        """Sign out of TradeStation for every kernel of this server."""
        status = _say(api.logout)
        if status is not None:
            print(status)

    @line_magic
    def ts_status(self, line: str = "") -> Any:
        """Who is signed in, scopes, and until when the token is valid."""
        return _say(api.status)


def _say(call: Any) -> Any:
    try:
        return call()
    except TSError as exc:
        print(f"ts_notebook: {exc}", file=sys.stderr)
        return None


def load(ipython: Any) -> None:
    """Register the magics and put ``ts`` (the package) in the user namespace."""
    import ts_notebook

    ipython.register_magics(TSMagics)
    ipython.push({"ts": ts_notebook})

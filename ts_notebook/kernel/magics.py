"""``%ts_login``, ``%ts_logout`` and ``%ts_status``."""

from __future__ import annotations

import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ..errors import TSError
from . import api
from .state import LOGIN_TIMEOUT


@magics_class
class TSMagics(Magics):
    """TradeStation sign-in magics. A failure prints one line that says what to do."""

    @magic_arguments()
    @argument(
        "--paste", action="store_true", help="ask for the address the browser ended on (a browser on another machine)"
    )
    @argument("--no-browser", action="store_true", help="print the sign-in address, do not open a browser")
    @argument("--timeout", type=float, default=LOGIN_TIMEOUT, help="seconds to wait for the browser")
    @argument(
        "--scopes", default=None, help='scopes to ask for instead of TS_SCOPES, e.g. "MarketData ReadAccount Trade"'
    )
    @line_magic
    def ts_login(self, line: str = "") -> None:
        """Sign in to TradeStation: a button in a notebook, the address in a terminal."""
        try:
            args = parse_argstring(self.ts_login, line)
        except UsageError as exc:
            print(
                f"ts_notebook: {exc}. Usage: %ts_login [--paste] [--no-browser] [--timeout SECONDS] "
                '[--scopes "SCOPE ..."]',
                file=sys.stderr,
            )
            return
        _say(
            lambda: api.login(
                paste=args.paste,
                timeout=args.timeout,
                open_browser=not args.no_browser,
                scopes=args.scopes.strip("\"'") if args.scopes else None,  # IPython keeps the quotes
            )
        )

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

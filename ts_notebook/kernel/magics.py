"""``%ts_login``, ``%ts_logout`` and ``%ts_status``."""

from __future__ import annotations

import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ..errors import TSError
from . import api, tracebacks
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
        done = _say(api.logout)
        if done is not None:
            print(done)

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
    """Register the magics, show ts_notebook's errors in a few lines, and put ``ts`` (the
    package) in the user namespace. Loading again (the first cell run twice) says nothing."""
    import ts_notebook

    ipython.register_magics(TSMagics)
    tracebacks.install(ipython)
    ipython.push({"ts": ts_notebook})
    # IPython answers a second %load_ext of an extension it has recorded with "already loaded,
    # use %reload_ext"; loading is repeatable, so once the cell is done the record goes.
    ipython.events.register("post_run_cell", _forget_loaded)


def _forget_loaded(result: Any = None) -> None:
    from IPython import get_ipython

    shell = get_ipython()
    shell.extension_manager.loaded.discard("ts_notebook")
    shell.events.unregister("post_run_cell", _forget_loaded)

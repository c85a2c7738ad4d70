"""TradeStation sign-in for Jupyter.

In a notebook::

    %load_ext ts_notebook
    %ts_login                      # click the button, sign in on TradeStation's page
    ts.session.get("brokerage/accounts").json()

``ts.session`` (live or simulator, per ``TS_ENV``) and ``ts.sim`` (always the simulator) are
``requests.Session`` objects that carry a bearer token kept valid for you. They are made on
first use: importing this package touches neither the network nor the environment.

The words the code uses, one for each thing:

- **sign-in**: one person's consent at TradeStation, from the callback until a sign-out or
  its end; its **tokens** are a :class:`~ts_notebook.tokens.TokenSet`.
- **login**: one attempt to sign in, from its start to its callback (a
  :class:`~ts_notebook.pending.PendingLogin`, waiting in the **pending-login table**).
- **keeper** (:mod:`ts_notebook.keeper`): the lifetime policy, a state machine with no I/O:
  when tokens are fresh, due, renewed, retried, taken over, revoked or dropped.
- **driver** (:mod:`ts_notebook.signin`): carries out the keeper's actions; ``SignIn`` on an
  asyncio loop, ``ThreadSignIn`` on threads.
- **store** (:class:`~ts_notebook.store.Store`): where a sign-in is kept across restarts (the
  keyring, a private file, or the hub service's vault).
- **broker** (:mod:`ts_notebook.server.broker`): a Jupyter server's owner of its one sign-in,
  which its kernels follow; **hub service** (:mod:`ts_notebook.hubservice`): the owner of each
  hub user's sign-in, which that user's servers follow.
- **source** (:mod:`ts_notebook.kernel.state`): where a kernel reads its tokens: its server's
  broker, or a driver of its own when no server has ts_notebook.
- **snapshot** (:class:`~ts_notebook.protocol.Snapshot`): one reading of a sign-in as it
  travels to kernels; **long-poll** (:mod:`ts_notebook.longpoll`): how every follower hears of
  a change.
- **refusal**: a request turned down with what to do: a page for a browser (``RefusedPage``),
  JSON for a server (``RefusedCall``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ConfigError, NotSignedIn, OAuthError, TSError

if TYPE_CHECKING:
    from .kernel.state import SignOut, Status

__all__ = [
    "APIError",
    "ConfigError",
    "NotSignedIn",
    "OAuthError",
    "TSError",
    "accounts",
    "auth",
    "balances",
    "bars",
    "cache",
    "download",
    "expirations",
    "login",
    "logout",
    "options",
    "orders",
    "positions",
    "quotes",
    "session",
    "sim",
    "status",
    "stream",
    "symbols",
    "watch",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # session, sim and auth are built on first use, so importing ts_notebook stays cheap.
    if name in ("session", "sim", "auth"):
        from .kernel import api

        return getattr(api, name)()
    if name == "cache":
        from .bulk import CacheView
        from .kernel import api

        return CacheView(api.session)
    if name == "APIError":  # it is also a requests.HTTPError, so it comes with requests
        from .kernel.replies import APIError

        return APIError
    raise AttributeError(f"module 'ts_notebook' has no attribute {name!r}")


def stream(path: str, **params: Any) -> Any:
    """``ts.session.iter_stream(path, **params)``: one of TradeStation's streams as an iterator
    of dicts (``for quote in ts.stream("marketdata/stream/quotes/MSFT"): ...``)."""
    from .kernel import api

    return api.session().iter_stream(path, **params)


def _frames(name: str) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        from . import frames
        from .kernel import api

        return getattr(frames, name)(api.session(), *args, **kwargs)

    call.__name__ = name
    return call


def bars(
    symbol: str,
    interval: int = 1,
    unit: str = "Daily",
    barsback: int | None = None,
    start: Any = None,
    end: Any = None,
    session: str | None = None,
    cache: bool = True,
) -> Any:
    """Bars of ``symbol`` as a pandas DataFrame (needs ``ts_notebook[pandas]``): a tz-aware
    exchange-time index, Open/High/Low/Close/Volume first. ``barsback`` bars ending at ``end``
    (default now), or all from ``start``; ``session`` is the session template (USEQPreAndPost ...).
    Closed bars are kept on this machine (``cache=False``: not), so a rerun asks only for what
    is missing (see ``ts.download``)."""
    from . import bulk
    from .kernel import api

    kept = bulk.cache_for(api.session()) if cache else None
    try:
        return bulk.one(api.session(), symbol, interval, unit, barsback, start, end, session, kept).frame()
    finally:
        if kept is not None:
            kept.close()


def download(
    symbols: Any,
    interval: int = 1,
    unit: str = "Daily",
    start: Any = None,
    end: Any = None,
    barsback: int | None = None,
    session: str | None = None,
    threads: int = 8,
    progress: bool = True,
    layout: str = "wide",
    cache: bool = True,
) -> Any:
    """Bars of many symbols at once as one DataFrame (needs ``ts_notebook[pandas]``), fetched
    ``threads`` at a time through ``ts.session``. Columns (field, symbol) whatever the number of
    symbols, or ``layout="long"``: rows (symbol, time). A 429 pauses every worker until its
    reset; a symbol refused or failing is named in a warning and in ``frame.attrs["errors"]``,
    and never loses the others. ``progress=False`` hides the progress bar. Closed bars are kept
    on this machine (``cache=False``: not): a rerun asks only for what is missing."""
    from . import bulk
    from .kernel import api

    return bulk.download(
        api.session(), symbols, interval, unit, start, end, barsback, session, threads, progress, layout, cache
    )


def quotes(symbols: Any) -> Any:
    """Quotes of ``symbols`` as a DataFrame indexed by symbol (refused symbols: a warning)."""
    return _frames("quotes")(symbols)


def symbols(symbols: Any) -> Any:
    """Symbol details as a DataFrame indexed by symbol: description, exchange, asset type,
    price format and point value (refused symbols: a warning, and ``attrs["errors"]``)."""
    return _frames("symbols")(symbols)


def expirations(underlying: str) -> Any:
    """The option expirations of ``underlying`` as a DataFrame (Date, Type), soonest first."""
    return _frames("expirations")(underlying)


def options(underlying: str, expiration: Any = None, strikes: int | None = None) -> Any:
    """The option chain of ``underlying`` as a DataFrame indexed by (Expiration, Strike, Side):
    bid, ask, last, volume, open interest, implied volatility and the greeks. ``expiration``
    (None: the next one); ``strikes`` either side of the money (None: TradeStation's 5)."""
    return _frames("options")(underlying, expiration, strikes)


def accounts() -> Any:
    """The accounts of this sign-in as a DataFrame."""
    return _frames("accounts")()


def balances(accounts: Any = None) -> Any:
    """Balances (default: of every account) as a DataFrame."""
    return _frames("balances")(accounts)


def positions(accounts: Any = None) -> Any:
    """Open positions (default: of every account) as a DataFrame."""
    return _frames("positions")(accounts)


def orders(accounts: Any = None) -> Any:
    """Orders (default: of every account, every page) as a DataFrame."""
    return _frames("orders")(accounts)


def watch(symbols: Any, seconds: float | None = None, **options: Any) -> Any:
    """Live quotes of ``symbols``: a table with a Stop button in a notebook (returned, and
    shown), one line per update in a terminal. ``seconds`` stops it; see
    ``ts_notebook.kernel.watch.watch`` for ``fields``, ``rate`` and ``block``."""
    from .kernel import api
    from .kernel.watch import watch as live

    return live(api.session(), symbols, seconds, **options)


def login(scopes: str | None = None) -> None:
    """Sign in: the button in a notebook, the address in a terminal. ``scopes`` asks for
    other scopes than TS_SCOPES (``ts.login(scopes="MarketData ReadAccount Trade")``)."""
    from .kernel import api

    api.login(scopes=scopes)


def logout() -> SignOut:
    """Sign out everywhere this sign-in is used and revoke its refresh token; the result says
    what happened (shown, in a cell)."""
    from .kernel import api

    return api.logout()


def status() -> Status:
    """Who is signed in, with which scopes, and until when the current token is valid."""
    from .kernel import api

    return api.status()


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext ts_notebook``: the magics, and ``ts`` in the user namespace."""
    from .kernel.magics import load

    load(ipython)


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .server.app import TSNotebook

    return [{"module": "ts_notebook", "app": TSNotebook}]

"""The kernel's public objects: one token source, ``session``, ``sim``, ``auth`` and the
``login`` / ``logout`` / ``status`` calls behind the magics.

Making ``ts.session`` loads no more than the session: the token source (the broker client,
or the in-process sign-in with its OAuth and JWT code) is picked, and its modules loaded, on
the session's first request.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import BrokerError
from .session import TSAuth, TSSession

if TYPE_CHECKING:
    from .state import SignOut, Status, TokenSource

_lock = threading.Lock()
_source: TokenSource | None = None
_objects: dict[str, object] = {}


def source() -> TokenSource:
    """This kernel's token source: its Jupyter server's broker when one is alive, else this
    process (terminal IPython, VS Code, a kernel whose server lacks ts_notebook).

    Raises:
        ConfigError: the settings for an in-process sign-in are malformed.
    """
    global _source
    with _lock:
        if _source is None:
            _source = _pick_source()
        return _source


def _pick_source() -> TokenSource:
    from .broker_client import BrokerClient, BrokerSource, find_broker
    from .local import LocalSource

    try:
        info = find_broker()
    except BrokerError as exc:
        print(f"ts_notebook: {exc} Signing in within this process instead.", file=sys.stderr)
        return LocalSource()
    if info is None:
        return LocalSource()
    if not info.server_alive():
        print(
            "ts_notebook: The Jupyter server that started this kernel has stopped. Signing in within this "
            "process instead.",
            file=sys.stderr,
        )
        return LocalSource()
    client = BrokerClient(info)
    # A live server that does not answer is never replaced by an in-process sign-in (which
    # would lack the server's client secret): the error says what failed, and the next call
    # tries again.
    client.probe()
    return BrokerSource(client)


def _shared(name: str, make: Callable[[], object]) -> object:
    with _lock:
        if name not in _objects:
            _objects[name] = make()
        return _objects[name]


def session() -> TSSession:
    """``ts.session``: live or simulator API, as TS_ENV says."""
    return _shared("session", lambda: TSSession(source))  # type: ignore[return-value]


def sim() -> TSSession:
    """``ts.sim``: always the simulator API."""
    return _shared("sim", lambda: TSSession(source, sim=True))  # type: ignore[return-value]


def auth() -> TSAuth:
    """``ts.auth``: the bearer auth alone, for ``requests.get(url, auth=ts.auth)``."""
    return _shared("auth", lambda: TSAuth(source))  # type: ignore[return-value]


def status() -> Status:
    """Who is signed in, with which scopes, and until when."""
    from .state import Status

    return Status.of(source().current())


def login(
    paste: bool = False, timeout: float | None = None, open_browser: bool = True, scopes: str | None = None
) -> None:
    """Sign in (see :meth:`TokenSource.login`); ``timeout`` defaults to ``LOGIN_TIMEOUT``."""
    from .state import LOGIN_TIMEOUT

    timeout = LOGIN_TIMEOUT if timeout is None else timeout
    source().login(paste=paste, timeout=timeout, open_browser=open_browser, scopes=scopes)


def logout() -> SignOut:
    """Sign out everywhere (every kernel of this server) and revoke the refresh token."""
    return source().logout()

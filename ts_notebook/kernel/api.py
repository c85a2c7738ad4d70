"""The kernel's public objects: one token source, ``session``, ``sim``, ``auth`` and the
``login`` / ``logout`` / ``status`` calls behind the magics.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable
from html import escape

from ..errors import TSError
from .broker_client import BrokerClient, BrokerSource, find_broker
from .session import TSAuth, TSSession
from .state import Snapshot, TokenSource

_lock = threading.Lock()
_source: TokenSource | None = None
_objects: dict[str, object] = {}


def source() -> TokenSource:
    """This kernel's token source: its Jupyter server's broker.

    Raises:
        TSError: no Jupyter server with ts_notebook started this kernel, or it is gone.
    """
    global _source
    with _lock:
        if _source is None:
            info = find_broker()
            if info is None:
                raise TSError(
                    "This kernel was not started by a Jupyter server with ts_notebook. Start "
                    "JupyterLab or Jupyter Notebook where ts_notebook is installed (the server "
                    "extension is enabled on install) and open the notebook there."
                )
            _source = BrokerSource(BrokerClient(info))
        return _source


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


@dataclass(frozen=True)
class Status:
    """The sign-in state as a person reads it: no token in it."""

    signed_in: bool
    user: str = ""
    scopes: tuple[str, ...] = ()
    expires_at: float = 0.0
    env: str = "live"
    api_url: str = ""
    error: str | None = field(default=None)

    @classmethod
    def of(cls, snap: Snapshot) -> "Status":
        """Summarise a snapshot."""
        return cls(
            signed_in=snap.signed_in,
            user=snap.display_name if snap.signed_in else "",
            scopes=snap.scopes,
            expires_at=snap.expires_at if snap.signed_in else 0.0,
            env=snap.env,
            api_url=snap.sim_api_url if snap.env == "sim" else snap.api_url,
            error=snap.error,
        )

    def __str__(self) -> str:
        if not self.signed_in:
            return f"Not signed in to TradeStation. {self.error or 'Run %ts_login to sign in.'}"
        until = time.strftime("%H:%M", time.localtime(self.expires_at))
        return (f"Signed in to TradeStation as {self.user} ({self.env}: {self.api_url}); "
                f"scopes: {' '.join(self.scopes)}; token valid until {until}, renewed automatically.")

    def _repr_pretty_(self, p, cycle: bool) -> None:  # type: ignore[no-untyped-def]
        p.text(str(self))

    def _repr_html_(self) -> str:
        return f"<span>{escape(str(self))}</span>"


def status() -> Status:
    """Who is signed in, with which scopes, and until when."""
    return Status.of(source().current())


def login() -> None:
    """Show the sign-in widget (or the signed-in state, with a sign-out button)."""
    from IPython.display import display

    from .widget import LoginWidget

    src = source()
    if not isinstance(src, BrokerSource):
        raise TSError("Sign-in needs this kernel's Jupyter server; restart the kernel from it.")
    info = src.client.info
    display(LoginWidget(src, login_path=info.login_path, paste_path=info.callback_path))


def logout() -> Status:
    """Sign out everywhere (every kernel of this server) and revoke the refresh token."""
    return Status.of(source().logout())

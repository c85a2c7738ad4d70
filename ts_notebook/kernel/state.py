"""What a kernel knows about the sign-in: the status a person reads, and the interface of
whatever keeps the sign-in current and signs in."""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

from ..protocol import Snapshot
from ..store import NOT_KEPT

Listener = Callable[[Snapshot], None]
log = logging.getLogger(__name__)
# How long %ts_login waits for the browser by default.
LOGIN_TIMEOUT = 300.0
# Why a sign-in is not kept (and how to keep it), as already said in this process: said in
# full once, since it stays true for as long as the process runs.
_told: set[str] = set()


def kept_once(kept: str) -> str:
    """Where the sign-in is kept, for a status about to be shown: a reason it is not kept is
    given the first time this process says it, and after that only that it is not kept."""
    if not kept.startswith(f"{NOT_KEPT}: "):
        return kept
    if kept in _told:
        return f"{NOT_KEPT}."
    _told.add(kept)
    return kept


def wait_interruptibly(event: threading.Event, timeout: float) -> bool:
    """Wait for ``event`` up to ``timeout`` in short steps, so Ctrl-C gets through."""
    deadline = time.monotonic() + timeout
    while not event.is_set() and time.monotonic() < deadline:
        event.wait(min(0.2, max(0.0, deadline - time.monotonic())))
    return event.is_set()


class Listeners:
    """Whoever listens to a token source (widgets, ``%ts_login``'s wait), told of each change
    one at a time, the newest state only and in version order, from whichever thread made it."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._delivered = -1

    def add(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def tell(self, snap: Snapshot) -> None:
        """Tell every listener of ``snap``, unless a newer state was told already."""
        with self._lock:
            if snap.version <= self._delivered:
                return
            self._delivered = snap.version
            for listener in list(self._listeners):
                try:
                    listener(snap)
                except Exception:  # a broken listener must not stop the others
                    log.debug("ts_notebook listener failed", exc_info=True)


@dataclass(frozen=True)
class Status:
    """The sign-in state as a person reads it: no token in it."""

    signed_in: bool
    user: str = ""
    scopes: tuple[str, ...] = ()
    expires_at: float = 0.0
    env: str = "live"
    api_url: str = ""
    error: str | None = None
    kept: str = ""

    @classmethod
    def of(cls, snap: Snapshot) -> Status:
        """Summarise a snapshot (a reason the sign-in is not kept: in full once per process)."""
        return cls(
            signed_in=snap.signed_in,
            user=snap.display_name if snap.signed_in else "",
            scopes=snap.scopes,
            expires_at=snap.expires_at if snap.signed_in else 0.0,
            env=snap.env,
            api_url=snap.sim_api_url if snap.env == "sim" else snap.api_url,
            error=snap.error,
            kept=kept_once(snap.kept),
        )

    def __str__(self) -> str:
        if not self.signed_in:
            text = f"Not signed in to TradeStation. {self.error or 'Run %ts_login to sign in.'}"
        else:
            until = time.strftime("%H:%M", time.localtime(self.expires_at))
            text = (
                f"Signed in to TradeStation as {self.user} ({self.env}: {self.api_url}); "
                f"scopes: {' '.join(self.scopes)}; token valid until {until}, renewed automatically."
            )
        return f"{text}\n{self.kept}" if self.kept else text

    def _repr_pretty_(self, p, cycle: bool) -> None:  # type: ignore[no-untyped-def]
        p.text(str(self))

    def _repr_html_(self) -> str:
        return f"<span>{escape(str(self))}</span>"


@dataclass(frozen=True)
class SignOut:
    """What a sign-out did, as a person reads it.

    Attributes:
        was_signed_in: someone was signed in (else there was nothing to sign out).
        revoke_failure: why revoking the refresh token at the provider failed, if it did
            (the sign-in is forgotten anyway).
    """

    was_signed_in: bool
    revoke_failure: str | None = None

    def __str__(self) -> str:
        if not self.was_signed_in:
            return "Not signed in to TradeStation; nothing to sign out."
        if self.revoke_failure:
            return (
                "Signed out of TradeStation: the sign-in is forgotten here, but revoking it at TradeStation "
                f"failed ({self.revoke_failure}), so it may stay valid there."
            )
        return "Signed out of TradeStation (the sign-in was revoked)."

    def _repr_pretty_(self, p, cycle: bool) -> None:  # type: ignore[no-untyped-def]
        p.text(str(self))


class TokenSource(ABC):
    """Keeps a kernel's :class:`Snapshot` current and signs in. The broker client (the Jupyter
    server signs in) is one; the in-process flow (no server) is another.
    """

    @abstractmethod
    def current(self) -> Snapshot:
        """The cached snapshot, re-read only when it cannot be trusted."""

    @abstractmethod
    def force_refresh(self, stale: str) -> Snapshot:
        """Renew because ``stale`` was refused; one renewal however many threads ask."""

    @abstractmethod
    def login(
        self, paste: bool = False, timeout: float = LOGIN_TIMEOUT, open_browser: bool = True, scopes: str | None = None
    ) -> None:
        """Sign in: the widget in a notebook, plain text in a terminal.

        Args:
            paste: ask for the address the browser ended on instead of listening for it (a
                browser on another machine than this kernel).
            timeout: seconds to wait for the browser.
            open_browser: open the sign-in page with the system browser (terminal, no server).
            scopes: scopes to ask for instead of TS_SCOPES' (openid and, when TS_SCOPES has
                it, offline_access are added); signs in again even when signed in.
        """

    @abstractmethod
    def logout(self) -> SignOut:
        """Sign out everywhere: forget the sign-in and revoke its refresh token."""

    @abstractmethod
    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(snapshot)`` from a background thread on every change."""

    @abstractmethod
    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``."""

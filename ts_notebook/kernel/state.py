"""What a kernel knows about the sign-in, and the interface of whatever keeps it current."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..tokens import display_name, is_fresh


@dataclass(frozen=True)
class Snapshot:
    """One reading of the sign-in state, as a kernel caches it.

    ``expires_at`` is on this process's wall clock, computed from the broker's ``expires_in``
    when the reading arrived.
    """

    version: int
    signed_in: bool
    api_url: str
    sim_api_url: str
    env: str
    api_origins: tuple[str, ...]
    access_token: str | None = field(default=None, repr=False)
    expires_at: float = 0.0
    lifetime: float = 1200.0
    scopes: tuple[str, ...] = ()
    user: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None
    login_pending: bool = False
    configured: bool = True

    @classmethod
    def from_reply(cls, data: Mapping[str, Any], now: float | None = None) -> Snapshot:
        """Build from the broker's JSON reply."""
        now = time.time() if now is None else now
        return cls(
            version=int(data["version"]),
            signed_in=bool(data["signed_in"]) and bool(data.get("access_token")),
            api_url=data["api_url"],
            sim_api_url=data["sim_api_url"],
            env=data.get("env", "live"),
            api_origins=tuple(data.get("api_origins", ())),
            access_token=data.get("access_token"),
            expires_at=now + float(data.get("expires_in", 0.0)),
            lifetime=float(data.get("lifetime", 1200.0)),
            scopes=tuple(data.get("scopes", ())),
            user=dict(data.get("user", {})),
            error=data.get("error"),
            login_pending=bool(data.get("login_pending")),
            configured=bool(data.get("configured", True)),
        )

    def fresh(self, now: float | None = None) -> bool:
        """True when the cached access token is good for more than the skew."""
        return self.signed_in and is_fresh(self.expires_at, self.lifetime, now)

    @property
    def display_name(self) -> str:
        """The signed-in user's name, as the id_token gave it."""
        return display_name(self.user)


Listener = Callable[[Snapshot], None]


class TokenSource:
    """Keeps a kernel's :class:`Snapshot` current. The broker client is one; the in-process
    (serverless) flow is another.
    """

    def current(self) -> Snapshot:
        """The cached snapshot, re-read only when it cannot be trusted."""
        raise NotImplementedError

    def force_refresh(self, stale: str) -> Snapshot:
        """Renew because ``stale`` was refused; one renewal however many threads ask."""
        raise NotImplementedError

    def logout(self) -> Snapshot:
        """Sign out everywhere."""
        raise NotImplementedError

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(snapshot)`` from a background thread on every change."""
        raise NotImplementedError

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        raise NotImplementedError

"""Logins started and not yet finished, and who may finish them: one table, with no clock,
no I/O and no lock (its drivers hold theirs).

The server's broker keeps one for every browser of its user; the in-process sign-in (no
server) keeps one with room for a single login. A login is claimed by its callback: once (a
claimed login is gone), within ``PENDING_TTL``, and only by the browser that started it (the
value of the cookie its start set, ``browser_key``). Nothing changes when a claim is refused,
except that an expired login is forgotten.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .errors import TSError
from .tokens import same_secret

# A pending login (state, verifier, nonce) is good for this long.
PENDING_TTL = 600.0
# At most this many logins wait for their callback at once; the oldest is dropped beyond it.
MAX_PENDING = 16


class LoginRejected(TSError):
    """A callback that does not belong to a live pending login of this browser; the message
    says what to do."""


@dataclass
class PendingLogin:
    """One started sign-in: what the callback must match and the exchange must send."""

    state: str = field(repr=False)
    verifier: str = field(repr=False)
    nonce: str = field(repr=False)
    redirect_uri: str
    authorize_url: str = field(repr=False)
    scopes: tuple[str, ...] = ()
    created: float = field(default_factory=time.monotonic)

    def expired(self, now: float | None = None) -> bool:
        """True once :data:`PENDING_TTL` has passed since the login started."""
        return (time.monotonic() if now is None else now) - self.created > PENDING_TTL


@dataclass(frozen=True)
class Entry:
    """A pending login and what binds it: the browser's key, and for a relayed login where
    the relay sends the browser on to (this server's callback on the origin it used)."""

    login: PendingLogin
    browser_key: str = field(repr=False)
    return_to: str = ""
    via_relay: bool = False


class PendingLogins:
    """The logins waiting for their callback, at most ``limit``.

    Args:
        here: who holds the table, for the messages ("this Jupyter server").
        limit: how many may wait at once.
    """

    def __init__(self, here: str, limit: int = MAX_PENDING) -> None:
        self.here = here
        self.limit = limit
        self._entries: dict[str, Entry] = {}

    def add(self, entry: Entry) -> None:
        """A login started; the oldest is dropped when the table is full."""
        while len(self._entries) >= self.limit:
            self._entries.pop(next(iter(self._entries)))
        self._entries[entry.login.state] = entry

    def claim(self, state: str, browser_key: str | None, now: float, bound: bool = True) -> PendingLogin:
        """Claim the login ``state`` names: single use, unexpired, and (``bound``) started by
        the browser whose key is ``browser_key``. ``bound`` is False only for an address the
        person pasted into the terminal that started the login: no browser carries it.

        Raises:
            LoginRejected: unknown, used or expired state, or another browser's login.
        """
        entry = self._entries.get(state) if state else None
        if entry is None:
            raise LoginRejected(
                f"This sign-in is unknown to {self.here}: it was already used, or it was started by "
                "another user or server. Run %ts_login and click the sign-in button again."
            )
        if entry.login.expired(now):
            del self._entries[state]
            raise LoginRejected("This sign-in took longer than 10 minutes and has expired. Run %ts_login again.")
        if bound and (not browser_key or not same_secret(entry.browser_key, browser_key)):
            raise LoginRejected(
                "This sign-in was started in another browser. Finish it in the browser where you "
                "clicked the sign-in button, or run %ts_login again here."
            )
        del self._entries[state]
        return entry.login

    def expire(self, now: float) -> int:
        """Forget the logins that expired by ``now``; returns how many."""
        gone = [s for s, e in self._entries.items() if e.login.expired(now)]
        for state in gone:
            del self._entries[state]
        return len(gone)

    def live(self, now: float) -> bool:
        """Whether a login is waiting and unexpired (a pure read)."""
        return any(not e.login.expired(now) for e in self._entries.values())

    def has_for(self, browser_key: str) -> bool:
        """Whether this browser still has a login waiting for its callback."""
        return any(same_secret(e.browser_key, browser_key) for e in self._entries.values())

    def relayed_to(self, state: str, now: float) -> str | None:
        """Where the relay sends the browser of ``state``'s login (None: no live relayed login)."""
        entry = self._entries.get(state)
        if entry is None or not entry.via_relay or entry.login.expired(now):
            return None
        return entry.return_to

    @property
    def relayed(self) -> bool:
        """Whether a waiting login needs the relay."""
        return any(e.via_relay for e in self._entries.values())

    def clear(self) -> None:
        """Forget every login (the in-process sign-in that was replaced or closed)."""
        self._entries.clear()

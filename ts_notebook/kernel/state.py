"""What a kernel knows about the sign-in, and the interface of whatever keeps it current."""

from __future__ import annotations

from collections.abc import Callable

from ..protocol import Snapshot

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

"""The long-poll, for both hops: kernels follow their server, and a hub user's servers follow
the hub service. One contract on each side of both.

- The side that holds the state keeps a version that goes up at every change (:class:`Changes`).
  Asked ``since=V``, it answers at once when its version is not V, else at the next change or
  after the timeout the caller gave (at most ``LONGPOLL_MAX``), and stops waiting for a caller
  that went away (:class:`LongPollHandler`).
- The side that follows asks again at once after an answer, and after a failure waits as
  :class:`Follower` says: a short wait while the other side may be restarting, then an
  exponential backoff; it calls the other side down only after ``OUTAGE_WAIT``.

Versions start from the wall clock in milliseconds, so whoever followed an earlier run sees
this run's state as newer. It imports no Jupyter and no tornado.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from .backoff import delay as backoff_delay

if TYPE_CHECKING:
    import asyncio  # the holders' side runs on asyncio; the followers' may not (a kernel's thread)

# The holder answers a long-poll after LONGPOLL seconds when nothing changes (a follower may ask
# for less, never more than LONGPOLL_MAX); the follower waits LONGPOLL_GRACE longer before it
# calls the connection dead.
LONGPOLL = 25.0
LONGPOLL_MAX = 60.0
LONGPOLL_GRACE = 10.0
# A holder that has not answered for less than this is restarting: followers ask again at most
# RESTART_STEP apart, and do not call it down. Longer, it is an outage.
OUTAGE_WAIT = 20.0
# After a failed long-poll the next waits RETRY_FIRST, doubling up to RETRY_MOST (RESTART_STEP
# at most while the holder may be restarting, so a follower is back within a second of it).
RETRY_FIRST, RESTART_STEP, RETRY_MOST = 0.25, 1.0, 10.0


class Changes:
    """A version that goes up at every change, and the long-polls waiting for the next one."""

    def __init__(self) -> None:
        self.version = int(time.time() * 1000)
        self._waiting: set[asyncio.Future[None]] = set()

    def bump(self) -> None:
        """Something changed: a new version, and every waiting long-poll answered."""
        self.version += 1
        for fut in self._waiting:
            if not fut.done():
                fut.set_result(None)
        self._waiting.clear()

    def watch(self) -> asyncio.Future[None]:
        """A future that resolves at the next change; cancel it to stop watching."""
        import asyncio

        fut = asyncio.get_running_loop().create_future()
        self._waiting.add(fut)
        fut.add_done_callback(self._waiting.discard)
        return fut

    def close(self) -> None:
        """Release every waiting long-poll (shutdown)."""
        for fut in list(self._waiting):
            fut.cancel()


def poll_arguments(since: str, timeout: str) -> tuple[int, float]:
    """A long-poll's ``since`` and ``timeout`` query arguments, read.

    Raises:
        ValueError: ``since`` is not a whole number, or ``timeout`` not a finite number.
    """
    version, seconds = int(since), float(timeout)
    if not math.isfinite(seconds):
        raise ValueError("timeout")
    return version, min(max(seconds, 0.0), LONGPOLL_MAX)


class LongPollHandler:
    """What a long-poll route does, mixed into a tornado handler (the server's kernel API, the
    hub service's sign-in route): hold the request until the next change, and stop holding it
    when the caller goes away."""

    _wake: asyncio.Future[None] | None = None
    request: Any

    async def hold(self, changes: Changes, since: int, timeout: float) -> bool:
        """Wait while ``since`` is the current version, until the next change or ``timeout``.

        Returns:
            False when the caller went away meanwhile (answer nothing), else True.
        """
        import asyncio

        if since != changes.version:
            return True
        self._wake = changes.watch()
        try:
            await asyncio.wait([self._wake], timeout=timeout)
        finally:
            self._wake.cancel()
        return not self.request.connection.stream.closed()

    def on_connection_close(self) -> None:
        if self._wake is not None:
            self._wake.cancel()  # the caller went away: stop waiting for it


class Follower:
    """When a follower asks again, and when it calls the holder down: no clock, no I/O (the
    follower's loop, on a thread or on asyncio, tells it what happened and when)."""

    def __init__(self) -> None:
        self.failures = 0
        self._down_since = 0.0

    def answered(self) -> None:
        """The long-poll was answered: ask again at once."""
        self.failures = 0

    def failed(self, now: float) -> tuple[float, bool]:
        """The long-poll failed at ``now``: (seconds to wait, whether the holder is down for
        longer than a restart)."""
        self.failures += 1
        if self.failures == 1:
            self._down_since = now
        down_for = now - self._down_since
        wait = backoff_delay(self.failures, RETRY_FIRST, RETRY_MOST)
        if down_for < OUTAGE_WAIT:
            return min(wait, RESTART_STEP), False
        return wait, True

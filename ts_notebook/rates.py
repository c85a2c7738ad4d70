"""Rates, for resources many share: how often a caller may make someone else call TradeStation.

A cap bounds how many calls run at once; only a rate bounds how many are made. The hub service
gives each hub user a rate of forced renewals and of code exchanges, and all users together a
rate of provider calls (:mod:`ts_notebook.hubservice.app`): every user shares one client id and
one outbound address, so a provider that throttles either would otherwise sign the whole hub
out because of one user.

A :class:`Bucket` is pure: no clock of its own, no lock (the service's event loop is its one
caller), so a test states its answers exactly.
"""

from __future__ import annotations

import math


class Bucket:
    """A token bucket: ``burst`` calls at once, then ``per_second`` on average.

    Args:
        burst: how many calls may be made back to back (at least one).
        per_second: how fast that allowance comes back.
        now: the time the bucket starts full (the caller's clock, in seconds).
    """

    def __init__(self, burst: float, per_second: float, now: float) -> None:
        if not (burst >= 1 and per_second > 0 and math.isfinite(burst) and math.isfinite(per_second)):
            raise ValueError("a bucket needs burst >= 1 and a positive, finite rate")
        self.burst, self.per_second = float(burst), float(per_second)
        self._left, self._at = self.burst, now

    def _refill(self, now: float) -> None:
        if now > self._at:  # a clock that went back refills nothing, and takes nothing away
            self._left = min(self.burst, self._left + (now - self._at) * self.per_second)
            self._at = now

    def take(self, now: float) -> float:
        """Take one call at ``now``: 0.0 when it may be made, else the seconds until one may
        (nothing is taken then)."""
        self._refill(now)
        if self._left >= 1:
            self._left -= 1
            return 0.0
        return (1 - self._left) / self.per_second

    def wait(self, now: float) -> float:
        """The seconds until a call may be made (0.0: now), taking nothing."""
        self._refill(now)
        return 0.0 if self._left >= 1 else (1 - self._left) / self.per_second

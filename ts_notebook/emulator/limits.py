"""The emulated API's rate limit: a rolling window of calls per user and resource."""

from __future__ import annotations

import threading
from collections import deque


class RateLimiter:
    """Counts calls per key over the last ``period`` seconds, as TradeStation's quotas do."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, str], deque[float]] = {}

    def hit(self, key: tuple[str, str], limit: int, period: float, now: float) -> tuple[bool, int, float]:
        """Count one call at ``now`` unless over the limit.

        Returns:
            (allowed, calls remaining in the window, seconds until the oldest call leaves it).
        """
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - period:
                calls.popleft()
            allowed = len(calls) < limit
            if allowed:
                calls.append(now)
            return allowed, max(0, limit - len(calls)), (calls[0] + period - now) if calls else period

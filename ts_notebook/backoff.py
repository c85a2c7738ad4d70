"""One backoff for every loop that calls something again: ``ts.session``'s retries, a stream's
reconnections, and the watchers that follow a server or the hub service.

Each loop keeps its own schedule (its first wait and its longest) beside it; this module only
says how a schedule grows. It is pure (no clock, no I/O, no randomness), so a schedule is a
fact a test can state exactly. No jitter: each loop here is one user's (one kernel's stream,
one server's watcher), and loops that fail together (the kernels of a restarted server) start
failing at different moments already; a random spread would only make their tests inexact.
"""

from __future__ import annotations

# Doublings past this change nothing (2**32 times any first wait is past any cap), and bounding
# the exponent keeps hours of failures (thousands in a row) from overflowing a float.
MAX_DOUBLINGS = 32


def delay(failures: int, first: float, most: float) -> float:
    """Seconds to wait after ``failures`` failures in a row (1, 2 ...): ``first``, doubling, at
    most ``most``. Fewer than one failure counts as one, so a loop never waits less than
    ``first`` (never a busy loop)."""
    return min(most, first * 2.0 ** min(max(failures, 1) - 1, MAX_DOUBLINGS))

"""Faults the emulator can inject, so tests can prove a client survives a misbehaving provider.

Tests change these from their own thread while handlers read them on the emulator's loop.
The settings are one immutable snapshot swapped whole under the provider's lock, so a
handler reads ``faults.settings`` once and sees a consistent set; the queue of scripted
/oauth/token outcomes is guarded by the same lock.
"""

from __future__ import annotations

import json
import math
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

#: The ``error`` recorded in ``grants`` for a token call whose connection was reset.
CONNECTION_RESET = "connection_reset"


@dataclass(frozen=True)
class InjectedFailure:
    """An OAuth error reply a token call was told to give instead of its real answer."""

    error: str
    description: str
    status: int
    retry_after: int | None = None  # a Retry-After header, in seconds (429 and 503 replies carry one)
    grant_type: str | None = None  # only a call of this grant (None: any call)


@dataclass(frozen=True)
class ConnectionReset:
    """A token call whose TCP connection is to be dropped without any HTTP reply."""


@dataclass(frozen=True)
class StreamBreak:
    """What the next stream connection does after ``after`` messages: ``drop`` the connection,
    fall ``silent`` (no data, no heartbeat, connection kept), or send the ``error`` named
    (``DualLogon`` ...) and end."""

    kind: str
    after: int
    error: str = ""
    symbol: str = ""  # an error about this one symbol: the stream goes on


#: What a scripted token call does instead of its real work.
TokenOutcome = InjectedFailure | ConnectionReset


@dataclass(frozen=True)
class FaultSettings:
    """The standing faults; every value is immutable or a private copy never mutated."""

    token_delay: float = 0.0
    clock_skew: float = 0.0
    jwks_override: Any = None
    sign_without_kid: bool = False
    expires_in_override: Any = None
    discovery_overrides: dict[str, Any] = field(default_factory=dict)
    # The API (/v3): seconds each call waits, and (limit, period seconds) per user and resource.
    api_delay: float = 0.0
    rate_limit: tuple[int, float] | None = None
    # Symbols whose bars requests always fail (503), as a symbol a feed has trouble with.
    failing_symbols: frozenset[str] = frozenset()
    # Symbols whose bars replies break off halfway through the body (the connection dropped).
    cut_symbols: frozenset[str] = frozenset()
    # Shares added to every bar's volume from now on: a data vendor's revision (late prints).
    bar_revision: int = 0
    # Streams: seconds between updates and between heartbeats when idle, a GoAway after this
    # many messages on every connection (None: never), and random re-chunking from a seed.
    stream_interval: float = 1.0
    stream_heartbeat: float = 5.0
    stream_goaway_after: int | None = None
    stream_rechunk_seed: int | None = None
    # The market's moment (UTC, whole seconds) when a test fixed it; None: the wall clock.
    market_clock: datetime | None = None


def json_copy(value: Any) -> Any:
    """A private deep copy of a JSON-serialisable value.

    Raises:
        TypeError: if ``value`` cannot be written as JSON.
    """
    return json.loads(json.dumps(value))


def finite_seconds(value: float, name: str, allow_negative: bool) -> float:
    """``value`` as a finite float.

    Raises:
        ValueError: if it is not finite, or negative where that makes no sense.
    """
    number = float(value)
    if not math.isfinite(number) or (number < 0 and not allow_negative):
        raise ValueError(f"{name} must be a finite{'' if allow_negative else ', non-negative'} number")
    return number


class Script:
    """Scripted outcomes for the next calls of one kind, taken in order, one per call."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._next: deque[Any] = deque()

    def add(self, outcome: Any, times: int = 1) -> None:
        """Script the next ``times`` calls, after any outcomes already scripted."""
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError("times must be a positive integer")
        with self._lock:
            self._next.extend([outcome] * times)

    def take(self, fits: Any = None) -> Any | None:
        """The outcome scripted for this call, if any, removed from the script: the first one,
        or the first that ``fits(outcome)`` says is for this call."""
        with self._lock:
            for i, outcome in enumerate(self._next):
                if fits is None or fits(outcome):
                    del self._next[i]
                    return outcome
            return None


class Faults:
    """The current :class:`FaultSettings`, and what the next token calls (:class:`TokenOutcome`),
    API calls (an HTTP status) and stream connections (:class:`StreamBreak`) were scripted to do."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._settings = FaultSettings()
        self.token_calls = Script(lock)
        self.api_calls = Script(lock)
        self.streams = Script(lock)

    @property
    def settings(self) -> FaultSettings:
        """The current snapshot (a plain read of an immutable value: no lock needed)."""
        return self._settings

    def update(self, **changes: Any) -> None:
        """Replace some settings; values must already be validated private copies."""
        with self._lock:
            self._settings = replace(self._settings, **changes)

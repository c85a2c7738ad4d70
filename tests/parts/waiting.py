"""Waiting for a condition, in async tests and in tests with no event loop of their own."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable


async def eventually(check: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    """Wait for ``check()`` to hold, without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def eventually_sync(check: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    """Wait for ``check()`` to hold (a test with no event loop of its own)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now (servers set SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True

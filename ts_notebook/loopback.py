"""Listening sockets for ``http://localhost:PORT`` callbacks: 127.0.0.1 and, where the machine
has IPv6, [::1] — both or neither, so no other program on ::1 can catch a callback meant here.
"""

from __future__ import annotations

import errno
import socket
import sys
from urllib.parse import urlsplit

# Errors that mean "this machine has no IPv6 loopback", not "someone else holds the port".
NO_IPV6 = {errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT}
# Windows' SO_EXCLUSIVEADDRUSE (~SO_REUSEADDR there); the socket module names it only on Windows.
SO_EXCLUSIVEADDRUSE = getattr(socket, "SO_EXCLUSIVEADDRUSE", -5)
# Hosts that mean "this machine": a "http://localhost:PORT" callback may name them, and a
# browser that reached Jupyter by one of them can use the loopback relay.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def address_option(platform: str = sys.platform) -> int:
    """The SOL_SOCKET option that makes a callback port ours alone.

    POSIX: SO_REUSEADDR only skips TIME_WAIT; another program still cannot bind the port.
    Windows: SO_REUSEADDR would let any program bind the same port and take the callback, so
    SO_EXCLUSIVEADDRUSE instead.
    """
    return SO_EXCLUSIVEADDRUSE if platform == "win32" else socket.SO_REUSEADDR


def relay_port(redirect_uri: str) -> int | None:
    """The port of a ``http://localhost[:PORT]`` callback with no path (what TradeStation
    registers for new keys), which must be listened on locally; None for any other URI."""
    try:
        parts = urlsplit(redirect_uri)
        port = parts.port or 80
    except ValueError:
        return None
    if (
        parts.scheme != "http"
        or parts.hostname not in LOOPBACK_NAMES
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        return None
    return port


def _listen(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, address_option(), 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    return sock


def bind_loopback(port: int) -> list[socket.socket]:
    """Listening sockets on ``port`` for 127.0.0.1 and ::1, or [] when the port is taken."""
    try:
        sockets = [_listen(socket.AF_INET, "127.0.0.1", port)]
    except OSError:
        return []
    try:
        sockets.append(_listen(socket.AF_INET6, "::1", port))
    except OSError as exc:
        if exc.errno not in NO_IPV6:  # another program listens on [::1]:port: not ours to use
            sockets[0].close()
            return []
    return sockets

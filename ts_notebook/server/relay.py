"""The loopback relay: lets a brand-new TradeStation key (no registered callback URL) sign in.

New keys accept only ``http://localhost[:port]`` callbacks with no path. While a login is
pending, the relay listens on one of those ports (127.0.0.1 and ::1) and sends the browser on
to the callback of the Jupyter server that started the login, query untouched, so Jupyter's
own login and the browser cookie still guard the callback. It holds the port only while a
login is pending.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable, Sequence

from tornado import httpserver, web

from ..loopback import bind_loopback
from ..pages import result_page

log = logging.getLogger(__name__)


class _RelayHandler(web.RequestHandler):
    def initialize(self, target: Callable[[str], str | None]) -> None:
        self.target = target

    def get(self, *_: str) -> None:
        callback = self.target(self.get_query_argument("state", ""))
        if callback is None:
            self.set_status(400)
            self.finish(
                result_page(
                    "Sign-in not accepted",
                    "This sign-in is not waiting on this Jupyter server: it expired, was already "
                    "used, or belongs to a server that has stopped. Run %ts_login again.",
                    ok=False,
                )
            )
            return
        self.redirect(f"{callback}?{self.request.query}")

    def log_exception(self, typ, value, tb) -> None:  # type: ignore[no-untyped-def]
        # tornado's default logs the whole URI, query (the code) included.
        log.warning("relay could not handle a request to %s: %s", self.request.path, typ.__name__ if typ else "")


def _log_without_query(handler: web.RequestHandler) -> None:
    # The query carries the authorization code: log the path only.
    log.debug("relay %s %s %s", handler.get_status(), handler.request.method, handler.request.path)


class LoopbackRelay:
    """Binds the first free of ``ports`` on loopback when asked, until closed.

    Args:
        ports: candidate ports, in order (each must be registered as ``http://localhost:PORT``).
        target: maps a pending login's ``state`` to the callback URL to forward to, or None.
    """

    def __init__(self, ports: Sequence[int], target: Callable[[str], str | None]) -> None:
        self.ports = tuple(ports)
        self._app = web.Application([(r"/(.*)", _RelayHandler, {"target": target})], log_function=_log_without_query)
        self._server: httpserver.HTTPServer | None = None
        self.port: int | None = None

    def open(self, ports: Sequence[int] | None = None) -> int:
        """Listen (if not already) on the first free of ``ports`` (default: the relay's own
        candidates) and return the port.

        Raises:
            OSError: every candidate port is taken.
        """
        if self._server is not None and self.port is not None:
            return self.port  # the ports come from settings, so every pending login asks for the same
        candidates = self.ports if ports is None else tuple(ports)
        for port in candidates:
            sockets = bind_loopback(port)
            for sock in sockets:
                sock.setblocking(False)  # tornado serves them from the event loop
            if sockets:
                self._server = httpserver.HTTPServer(self._app)
                self._server.add_sockets(sockets)
                self.port = port
                log.info("Loopback relay listening on port %d for a pending sign-in", port)
                return port
        raise OSError(errno.EADDRINUSE, f"all sign-in callback ports are in use: {list(candidates)}")

    @property
    def listening(self) -> bool:
        """True while the relay holds its port."""
        return self._server is not None

    def close(self) -> None:
        """Release the port."""
        if self._server is not None:
            self._server.stop()
            # Drop kept-alive browser connections too, so the port is wholly free.
            asyncio.ensure_future(self._server.close_all_connections())
            self._server = None
            log.info("Loopback relay released port %s", self.port)
            self.port = None

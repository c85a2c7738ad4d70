"""The in-process sign-in's listener on ``http://localhost:PORT`` (127.0.0.1 and ::1)."""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..loopback import bind_loopback
from ..oauth import callback_params
from ..pages import result_page
from ..pending import PENDING_TTL

log = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock: socket.socket, handler: type[BaseHTTPRequestHandler]) -> None:
        # Serve a socket bound by bind_loopback (127.0.0.1 and ::1 taken together).
        self.address_family = sock.family
        super().__init__(sock.getsockname()[:2], handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock


def cookie_value(header: str, name: str) -> str | None:
    """The value of cookie ``name`` in a Cookie header. By hand: the standard library's parser
    drops the whole header over one cookie it dislikes (another local app's JSON, say)."""
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None


class Login(Protocol):
    """What the listener serves: the in-process login (``local_login.LocalLogin``)."""

    browser_key: str
    message: str

    def start(self, token: str) -> str | None: ...

    def complete(self, params: dict[str, str], browser_key: str | None) -> tuple[bool, str, str]: ...


class CallbackListener:
    """Listens on ``http://localhost:PORT`` (127.0.0.1 and ::1) for one sign-in.

    ``/start/<token>`` (once) sets the login's browser cookie and redirects to the provider;
    any other path is the callback, answered with the cookie the browser sent.
    """

    def __init__(self, ports: tuple[int, ...], login: Login) -> None:
        cookie = ""  # named after the port bound below: two listeners never share a port

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path == "/start" or path.startswith("/start/"):
                    target = login.start(path[len("/start/") :])
                    if target is not None:
                        self.send_response(302)
                        self.send_header("Location", target)
                        self.send_header(
                            "Set-Cookie",
                            f"{cookie}={login.browser_key}; Path=/; HttpOnly; SameSite=Lax; Max-Age={int(PENDING_TTL)}",
                        )
                        self.send_header("Cache-Control", "no-store")
                        self.end_headers()
                        return
                    ok, title, detail = (
                        False,
                        "Sign-in not started",
                        login.message or ("This is not the address of a sign-in waiting here. Run %ts_login again."),
                    )
                else:
                    ok, title, detail = login.complete(
                        callback_params(self.path), cookie_value(self.headers.get("Cookie", ""), cookie)
                    )
                body = result_page(title, detail, ok).encode()
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                # The request line carries the code: log nothing of it.
                log.debug("sign-in listener answered a request")

        self.port: int | None = None
        self._servers: list[_Server] = []
        for port in ports:
            sockets = bind_loopback(port)
            if sockets:
                self.port = port
                cookie = f"ts_notebook_login_{port}"
                self._servers = [_Server(sock, Handler) for sock in sockets]
                break
        if self.port is None:
            raise ConfigError(
                f"Cannot listen for the sign-in callback: ports {list(ports)} are all in use. "
                "Free one, or set TS_RELAY_PORTS (or TS_REDIRECT_URI) to a free registered port."
            )
        for server in self._servers:
            threading.Thread(target=server.serve_forever, name="ts_notebook-callback", daemon=True).start()

    @property
    def url(self) -> str:
        """The redirect URI this listener answers."""
        return f"http://localhost:{self.port}"

    def close(self) -> None:
        """Stop listening and free the port."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []

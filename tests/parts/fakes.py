"""Real HTTP servers on 127.0.0.1 that misbehave as a provider, an API or a proxy in between
may, and a call that fails once. (The emulator, the well-behaved provider, is the package's own.)"""

from __future__ import annotations

import json
import random
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl


class EchoingRefusal(BaseHTTPRequestHandler):
    """A provider endpoint (token, revoke) that refuses every call, quoting what it was sent,
    as a sloppy or hostile provider (or a debugging proxy before one) does."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        sent = dict(parse_qsl(body))
        quoted = " ".join(f"{k}={v}" for k, v in sent.items() if k not in ("grant_type", "client_id"))
        reply = json.dumps({"error": "invalid_request", "error_description": f"cannot use {quoted}"}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


def serve_on_loopback(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """``handler`` served on 127.0.0.1 in a daemon thread; ``shutdown()`` it when done."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


class RechunkingProxy:
    """A loopback HTTP proxy in front of ``upstream`` (``host``, ``port``) that passes requests
    through and re-cuts a chunked reply's body into chunks of random sizes (1 byte and up:
    mid-object, mid-character), as a proxy or load balancer between TradeStation and the
    client may. ``url`` is its address."""

    def __init__(self, upstream: tuple[str, int], seed: int = 0) -> None:
        self.upstream, self.rng = upstream, random.Random(seed)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client, socket.create_connection(self.upstream) as server:
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()
            reader = server.makefile("rb")
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = reader.readline()
                if not line:
                    return
                head += line
            try:
                client.sendall(head)
                if b"transfer-encoding: chunked" not in head.lower():
                    while data := reader.read1(65536):
                        client.sendall(data)
                    return
                while True:
                    size = int(reader.readline().split(b";")[0], 16)
                    data = reader.read(size) if size else b""
                    reader.readline()
                    while data:
                        cut = self.rng.randint(1, 9)
                        piece, data = data[:cut], data[cut:]
                        client.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                    if size == 0:
                        client.sendall(b"0\r\n\r\n")
                        return
            except (OSError, ValueError):
                return

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass


class CannedAPI:
    """A hostile or broken API on 127.0.0.1: each GET of a path (query ignored) is answered
    from ``replies[path]`` (status, body bytes), or by ``replies[path](query)`` for replies that
    change. ``url`` is its base; ``asked`` lists (path, query) in order."""

    def __init__(self, replies: dict[str, Any]) -> None:
        canned, asked = replies, []
        self.asked = asked

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                params = {k: v[-1] for k, v in parse_qs(query).items()}
                asked.append((path, params))
                answer = canned.get(path, (404, b'{"Error": "NotFound", "Message": "none"}'))
                status, body = answer(params) if callable(answer) else answer
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fails_once(real: Callable[..., Any], error: BaseException) -> Callable[..., Any]:
    """``real``, except that its first call raises ``error``; ``.calls`` counts the calls."""

    def call(*args: Any, **kwargs: Any) -> Any:
        call.calls += 1  # type: ignore[attr-defined]
        if call.calls == 1:  # type: ignore[attr-defined]
            raise error
        return real(*args, **kwargs)

    call.calls = 0  # type: ignore[attr-defined]
    return call

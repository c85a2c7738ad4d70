"""Sign-in with no Jupyter server: terminal IPython, VS Code, ``jupyter console``.

The same protocol client runs in this process. A one-shot listener on a default localhost
callback URL (``http://localhost:31022`` first) receives the browser after sign-in; its
``/start`` path sends the browser to the provider, so the widget holds no state. Tokens then
live and renew in this process.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit

from ..config import Settings
from ..errors import ConfigError, OAuthError
from ..loopback import bind_loopback
from ..oauth import OAuthClient, PendingLogin, callback_code, callback_params, same_secret, sign_in_ended
from ..pages import result_page
from ..tokens import RETRY_AFTER, TokenSet
from .state import Listener, Snapshot, TokenSource

log = logging.getLogger(__name__)

# How long %ts_login waits for the browser by default.
LOGIN_TIMEOUT = 300.0


def wait_interruptibly(event: threading.Event, timeout: float) -> bool:
    """Wait for ``event`` up to ``timeout`` in short steps, so Ctrl-C gets through."""
    deadline = time.monotonic() + timeout
    while not event.is_set() and time.monotonic() < deadline:
        event.wait(min(0.2, max(0.0, deadline - time.monotonic())))
    return event.is_set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock: socket.socket, handler: type[BaseHTTPRequestHandler]) -> None:
        # Serve a socket bound by bind_loopback (127.0.0.1 and ::1 taken together).
        self.address_family = sock.family
        super().__init__(sock.getsockname()[:2], handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock


class CallbackListener:
    """Listens on ``http://localhost:PORT`` (127.0.0.1 and ::1) for one sign-in.

    ``/start`` redirects to the provider; any other path is the callback.
    """

    def __init__(self, ports: tuple[int, ...], on_callback: Callable[[dict[str, str]], tuple[bool, str, str]],
                 start_url: Callable[[], str]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = urlsplit(self.path)
                if path.path == "/start":
                    self.send_response(302)
                    self.send_header("Location", start_url())
                    self.end_headers()
                    return
                ok, title, detail = on_callback(callback_params(self.path))
                body = result_page(title, detail, ok).encode()
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
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
                self._servers = [_Server(sock, Handler) for sock in sockets]
                break
        if self.port is None:
            raise ConfigError(f"Cannot listen for the sign-in callback: ports {list(ports)} are all in use. "
                              "Free one, or set TS_RELAY_PORTS to a free registered port.")
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


class LocalLogin:
    """One in-process sign-in: a listener, a pending login, and its outcome."""

    def __init__(self, source: "LocalSource", listen: bool = True) -> None:
        self.source = source
        self.done = threading.Event()
        self.message = ""
        self._claim = threading.Lock()
        self._claimed = False
        client = source.client  # a missing key is reported before any port is taken
        ports = source.settings.relay_ports
        self.listener = CallbackListener(ports, self.complete, lambda: self.pending.authorize_url) if listen else None
        redirect = source.settings.redirect_uri or (self.listener.url if self.listener else f"http://localhost:{ports[0]}")
        try:
            self.pending: PendingLogin = client.begin_login(redirect)
        except BaseException:
            self.close()
            raise

    @property
    def start_url(self) -> str | None:
        """Where a browser on this machine starts (no state in it), if listening."""
        return f"{self.listener.url}/start" if self.listener else None

    def complete(self, params: dict[str, str]) -> tuple[bool, str, str]:
        """Finish with the callback's query, once; returns (ok, page title, detail)."""
        with self._claim:  # two callbacks at once: one exchange
            if self._claimed or self.done.is_set():
                return False, "Sign-in not accepted", "This sign-in was already finished. Run %ts_login again."
            if not same_secret(params.get("state", ""), self.pending.state) or self.pending.expired():
                return False, "Sign-in not accepted", ("This address does not belong to the sign-in waiting here "
                                                       "(unknown or expired). Run %ts_login again.")
            self._claimed = True
        try:
            tokens = self.source.client.exchange(self.pending, callback_code(params))
        except OAuthError as exc:
            self.message = str(exc)
            self.done.set()
            self.source.set_error(str(exc))
            return False, "Sign-in not completed", str(exc)
        self.source.install(tokens)
        self.message = f"Signed in to TradeStation as {tokens.display_name}."
        self.done.set()
        return True, self.message, "You can close this tab."

    def complete_pasted(self, address: str) -> None:
        """Finish with the address the browser ended on (pasted by the user)."""
        try:
            ok, _, detail = self.complete(callback_params(address))
        except OAuthError as exc:
            ok, detail = False, str(exc)
        if not ok and not self.message:
            self.message = detail

    def wait(self, timeout: float) -> bool:
        """Block until done or timeout; Ctrl-C interrupts (and the caller cancels)."""
        return wait_interruptibly(self.done, timeout)

    def close(self) -> None:
        """Release the callback port; a wait in progress ends."""
        if self.listener is not None:
            self.listener.close()
        self.done.set()


class LocalSource(TokenSource):
    """Tokens kept in this process, renewed on a timer, single-flight across threads."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.load()
        self._client: OAuthClient | None = None
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._timer: threading.Timer | None = None
        self.tokens: TokenSet | None = None
        self.error: str | None = None
        self.version = 0
        self.login: LocalLogin | None = None  # the sign-in waiting for its browser, if any

    @property
    def client(self) -> OAuthClient:
        """The protocol client (needs TS_CLIENT_ID)."""
        if self._client is None:
            self._client = OAuthClient(self.settings)
        return self._client

    @property
    def snapshot(self) -> Snapshot:
        """The current state, without any I/O (as ``BrokerSource.snapshot``)."""
        s, t = self.settings, self.tokens
        return Snapshot(
            version=self.version, signed_in=t is not None, api_url=s.api_url, sim_api_url=s.sim_api_url,
            env=s.env, api_origins=s.api_origins, access_token=t.access_token if t else None,
            expires_at=t.expires_at if t else 0.0, lifetime=t.lifetime if t else 1200.0,
            scopes=t.scopes if t else (), user=dict(t.user) if t else {}, error=self.error,
            configured=bool(s.client_id), login_pending=self.login is not None and not self.login.done.is_set(),
        )

    def _changed(self) -> None:
        self.version += 1
        snap = self.snapshot
        for listener in list(self._listeners):
            try:
                listener(snap)
            except Exception:  # a broken listener must not stop the others
                log.debug("ts_notebook listener failed", exc_info=True)

    def install(self, tokens: TokenSet | None, error: str | None = None) -> None:
        """Make ``tokens`` current (None: signed out, with ``error`` as the reason)."""
        with self._lock:
            self.tokens, self.error = tokens, error
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if tokens is not None and tokens.refresh_token:
                self._timer = threading.Timer(tokens.renew_in(), self._renew_on_timer, args=(tokens,))
                self._timer.daemon = True
                self._timer.start()
            self._changed()

    def set_error(self, message: str) -> None:
        """Record why a sign-in failed, for the widget."""
        with self._lock:
            self.error = message
            self._changed()

    def _renew_on_timer(self, tokens: TokenSet) -> None:
        try:
            self.force_refresh(tokens.access_token)
        except OAuthError as exc:
            with self._lock:
                if self.tokens is not tokens or tokens.seconds_left() <= 0:
                    return  # replaced or signed out meanwhile, or too late to retry
                log.warning("Renewing the TradeStation token failed (%s); retrying", exc.error)
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = threading.Timer(min(RETRY_AFTER, tokens.seconds_left() / 2),
                                              self._renew_on_timer, args=(tokens,))
                self._timer.daemon = True
                self._timer.start()

    def current(self) -> Snapshot:
        """The state now; renews first when the token is about to expire."""
        snap = self.snapshot
        if snap.signed_in and not snap.fresh():
            return self.force_refresh(snap.access_token or "")
        return snap

    def force_refresh(self, stale: str) -> Snapshot:
        """Renew once however many threads ask; those that find it renewed skip it."""
        with self._refresh_lock:
            tokens = self.tokens
            if tokens is None:
                return self.snapshot
            if not same_secret(tokens.access_token, stale) and self.snapshot.fresh():
                return self.snapshot
            try:
                renewed = self.client.refresh(tokens)
            except OAuthError as exc:
                if exc.permanent and self.tokens is tokens:
                    self.install(None, sign_in_ended(exc))
                    return self.snapshot
                raise
            if self.tokens is tokens:
                self.install(renewed)
            elif renewed.refresh_token and renewed.refresh_token != tokens.refresh_token:
                self._revoke_quietly(renewed.refresh_token)  # signed out (or in anew) meanwhile
            return self.snapshot

    def _revoke_quietly(self, refresh_token: str) -> None:
        try:
            self.client.revoke(refresh_token)
        except OAuthError as exc:
            log.warning("Revoking the refresh token failed (%s); it is forgotten here anyway", exc.error)

    def logout(self) -> Snapshot:
        """Forget the tokens and revoke the refresh token."""
        tokens = self.tokens
        self.install(None)
        if tokens is not None and tokens.refresh_token:
            self._revoke_quietly(tokens.refresh_token)
        return self.snapshot

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(snapshot)`` on every change (from whichever thread made it)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)

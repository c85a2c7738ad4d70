"""Sign-in with no Jupyter server: terminal IPython, VS Code, ``jupyter console``.

The same protocol client runs in this process. A one-shot listener on a default localhost
callback URL (``http://localhost:31022`` first) receives the browser after sign-in; its
``/start`` path sends the browser to the provider, so no state ever sits in a widget or an
output. Tokens then live and renew in this process.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from ..config import Settings
from ..errors import ConfigError, OAuthError
from ..oauth import OAuthClient, PendingLogin, same_secret
from ..pages import result_page
from ..tokens import RETRY_AFTER, TokenSet
from .state import Listener, Snapshot, TokenSource

log = logging.getLogger(__name__)

# How long %ts_login waits for the browser by default.
LOGIN_TIMEOUT = 300.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class CallbackListener:
    """Listens on ``http://localhost:PORT`` (127.0.0.1 and ::1) for one sign-in.

    ``/start`` redirects to the provider; any other path is the callback.
    """

    def __init__(self, ports: tuple[int, ...], on_callback: Callable[[dict[str, str]], tuple[bool, str, str]],
                 start_url: Callable[[], str]) -> None:
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = urlsplit(self.path)
                if path.path == "/start":
                    self.send_response(302)
                    self.send_header("Location", start_url())
                    self.end_headers()
                    return
                params = {k: v[0] for k, v in parse_qs(path.query).items()}
                ok, title, detail = listener.on_callback(params)
                body = result_page(title, detail, ok).encode()
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                # The request line carries the code: log nothing of it.
                log.debug("sign-in listener answered a request")

        self.on_callback = on_callback
        self._servers: list[ThreadingHTTPServer] = []
        self.port: int | None = None
        for port in ports:
            try:
                self._servers = [_Server(("127.0.0.1", port), Handler)]
            except OSError:
                continue
            try:
                self._servers.append(_IPv6Server(("::1", port), Handler))
            except OSError:
                pass  # no IPv6 loopback: browsers fall back to 127.0.0.1
            self.port = port
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
        self.ok = False
        self.message = ""
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
        """Finish with the callback's query; returns (ok, page title, detail)."""
        if self.done.is_set():
            return False, "Sign-in not accepted", "This sign-in was already finished. Run %ts_login again."
        if not same_secret(params.get("state", ""), self.pending.state) or self.pending.expired():
            return False, "Sign-in not accepted", ("This address does not belong to the sign-in waiting here "
                                                   "(unknown or expired). Run %ts_login again.")
        try:
            if params.get("error"):
                raise OAuthError(params["error"], params.get("error_description", ""), "Run %ts_login to try again")
            if not params.get("code"):
                raise OAuthError("invalid_request", "the address carries no code", "Run %ts_login again")
            tokens = self.source.client.exchange(self.pending, params["code"])
        except OAuthError as exc:
            self._finish(False, str(exc))
            self.source.set_error(str(exc))
            return False, "Sign-in not completed", str(exc)
        self.source.install(tokens)
        self._finish(True, f"Signed in to TradeStation as {tokens.display_name}.")
        return True, f"Signed in to TradeStation as {tokens.display_name}.", "You can close this tab."

    def complete_pasted(self, address: str) -> bool:
        """Finish with the address the browser ended on (pasted by the user)."""
        params = {k: v[0] for k, v in parse_qs(urlsplit(address.strip()).query).items()}
        ok, title, detail = self.complete(params)
        if not ok and not self.done.is_set():
            self.message = detail
        return ok

    def _finish(self, ok: bool, message: str) -> None:
        self.ok, self.message = ok, message
        self.done.set()

    def wait(self, timeout: float) -> bool:
        """Block until done or timeout; Ctrl-C interrupts (and the caller cancels)."""
        deadline = time.monotonic() + timeout
        while not self.done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.done.wait(min(left, 0.2))  # short waits keep Ctrl-C responsive
        return True

    def close(self) -> None:
        """Release the callback port."""
        if self.listener is not None:
            self.listener.close()


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

    def snapshot(self) -> Snapshot:
        """The current state, as kernels see it."""
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
        snap = self.snapshot()
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
            if self.tokens is tokens and tokens.seconds_left() > 0:
                log.warning("Renewing the TradeStation token failed (%s); retrying", exc.error)
                with self._lock:
                    self._timer = threading.Timer(min(RETRY_AFTER, tokens.seconds_left() / 2),
                                                  self._renew_on_timer, args=(tokens,))
                    self._timer.daemon = True
                    self._timer.start()

    def current(self) -> Snapshot:
        """The state now; renews first when the token is about to expire."""
        snap = self.snapshot()
        if snap.signed_in and not snap.fresh():
            return self.force_refresh(snap.access_token or "")
        return snap

    def force_refresh(self, stale: str) -> Snapshot:
        """Renew once however many threads ask; those that find it renewed skip it."""
        with self._refresh_lock:
            tokens = self.tokens
            if tokens is None:
                return self.snapshot()
            if not same_secret(tokens.access_token, stale) and self.snapshot().fresh():
                return self.snapshot()
            try:
                renewed = self.client.refresh(tokens)
            except OAuthError as exc:
                if exc.permanent:
                    self.install(None, f"Your TradeStation sign-in has ended ({exc.description or exc.error}). "
                                       "Run %ts_login to sign in again.")
                    return self.snapshot()
                raise
            self.install(renewed)
            return self.snapshot()

    def logout(self) -> Snapshot:
        """Forget the tokens and revoke the refresh token."""
        tokens = self.tokens
        self.install(None)
        if tokens is not None and tokens.refresh_token:
            try:
                self.client.revoke(tokens.refresh_token)
            except OAuthError as exc:
                log.warning("Revoking the refresh token failed (%s); it is forgotten here anyway", exc.error)
        return self.snapshot()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(snapshot)`` on every change (from whichever thread made it)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)

"""Sign-in with no Jupyter server: terminal IPython, VS Code, ``jupyter console``.

The same protocol client runs in this process. A one-shot listener on a default localhost
callback URL (``http://localhost:31022`` first) receives the browser after sign-in; its
``/start`` path sends the browser to the provider, so the widget holds no state. Tokens then
live and renew in this process.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from ..config import Settings
from ..errors import ConfigError, OAuthError
from ..loopback import bind_loopback, relay_port
from ..oauth import (
    PENDING_TTL,
    OAuthClient,
    PendingLogin,
    callback_code,
    callback_params,
    same_secret,
    sign_in_ended,
    strip_query,
)
from ..pages import result_page
from ..tokens import TokenSet
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

    ``/start/<token>`` (once) sets the login's browser cookie and redirects to the provider;
    any other path is the callback, answered with the cookie the browser sent.
    """

    def __init__(self, ports: tuple[int, ...], login: LocalLogin) -> None:
        cookie = f"ts_notebook_login_{'_'.join(map(str, ports))}"

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path == "/start" or path.startswith("/start/"):
                    target = login.start(path[len("/start/"):])
                    if target is not None:
                        self.send_response(302)
                        self.send_header("Location", target)
                        self.send_header("Set-Cookie", f"{cookie}={login.browser_key}; Path=/; HttpOnly; "
                                         f"SameSite=Lax; Max-Age={int(PENDING_TTL)}")
                        self.send_header("Cache-Control", "no-store")
                        self.end_headers()
                        return
                    ok, title, detail = False, "Sign-in not started", login.message or (
                        "This is not the address of a sign-in waiting here. Run %ts_login again.")
                else:
                    jar = SimpleCookie(self.headers.get("Cookie", ""))
                    ok, title, detail = login.complete(callback_params(self.path),
                                                       jar[cookie].value if cookie in jar else None)
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
                self._servers = [_Server(sock, Handler) for sock in sockets]
                break
        if self.port is None:
            raise ConfigError(f"Cannot listen for the sign-in callback: ports {list(ports)} are all in use. "
                              "Free one, or set TS_RELAY_PORTS (or TS_REDIRECT_URI) to a free registered port.")
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
    """One in-process sign-in: a listener, a pending login, and its outcome.

    With a listener, the login is bound to the browser that opens its one-time start address
    (an unguessable path, usable once, that sets an httponly cookie the callback must carry):
    another program on this machine can neither read the authorize URL nor finish the login
    with a code of its own.
    """

    def __init__(self, source: LocalSource, listen: bool = True) -> None:
        self.source = source
        self.done = threading.Event()
        self.message = ""
        self.browser_key = secrets.token_urlsafe(32)
        self._start_token = secrets.token_urlsafe(32)
        self._started = False
        self._claim = threading.Lock()
        self._claimed = False
        client = source.client  # a missing key is reported before any port is taken
        redirect = source.settings.redirect_uri
        ports = source.settings.relay_ports
        if redirect and listen:
            port = relay_port(redirect)
            if port is None:
                raise ConfigError(f"TS_REDIRECT_URI ({strip_query(redirect)}) is not an http://localhost:PORT "
                                  "address, so this process cannot receive the browser's callback. Run "
                                  "%ts_login --paste, or set TS_REDIRECT_URI to a registered localhost address.")
            ports = (port,)
        self.listener = CallbackListener(ports, self) if listen else None
        redirect = redirect or (self.listener.url if self.listener else f"http://localhost:{ports[0]}")
        try:
            self.pending: PendingLogin = client.begin_login(redirect)
        except BaseException:
            self.close()
            raise

    @property
    def start_url(self) -> str | None:
        """Where the browser on this machine starts (one use), if listening."""
        return f"{self.listener.url}/start/{self._start_token}" if self.listener else None

    def start(self, token: str) -> str | None:
        """The authorize URL for the first visit of the start address, else None.

        A second visit cancels the login: one of the two browsers is not the user's.
        """
        with self._claim:
            if not same_secret(token, self._start_token) or self.done.is_set():
                return None
            if not self._started:
                self._started = True
                return self.pending.authorize_url
        self._end("This sign-in address was opened twice, so the sign-in was cancelled (only one browser may "
                  "use it). Run %ts_login again.")
        return None

    def complete(self, params: dict[str, str], browser_key: str | None) -> tuple[bool, str, str]:
        """Finish with a callback that reached the listener, from the browser that started
        the login; returns (ok, page title, detail)."""
        if not browser_key or not same_secret(browser_key, self.browser_key):
            return False, "Sign-in not accepted", ("This sign-in was not started in this browser. Open the address "
                                                   "%ts_login gave (or click its button) here, or run %ts_login again.")
        return self._finish(params)

    def complete_pasted(self, address: str) -> None:
        """Finish with the address the browser ended on (pasted by the user)."""
        try:
            ok, _, detail = self._finish(callback_params(address))
        except OAuthError as exc:
            ok, detail = False, str(exc)
        if not ok and not self.message:
            self.message = detail

    def _finish(self, params: dict[str, str]) -> tuple[bool, str, str]:
        with self._claim:  # two callbacks at once: one exchange
            if self._claimed or self.done.is_set():
                return False, "Sign-in not accepted", "This sign-in was already finished. Run %ts_login again."
            if not same_secret(params.get("state", ""), self.pending.state) or self.pending.expired():
                return False, "Sign-in not accepted", ("This address does not belong to the sign-in waiting here "
                                                       "(unknown or expired). Run %ts_login again.")
            self._claimed = True
        try:
            tokens = self.source.complete_login(self.pending, params)
        except OAuthError as exc:
            self.message = str(exc)
            self.done.set()
            return False, "Sign-in not completed", str(exc)
        self.message = f"Signed in to TradeStation as {tokens.display_name}."
        self.done.set()
        return True, self.message, "You can close this tab."

    def _end(self, message: str) -> None:
        self.message = message
        self.done.set()
        self.source.set_error(message)

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

    def complete_login(self, pending: PendingLogin, params: dict[str, str]) -> TokenSet:
        """Finish a claimed login (as the server's broker does): exchange the code and make
        the result the current sign-in, revoking the one it replaces first.

        Raises:
            OAuthError: the provider sent an error, or the exchange failed; the widget says why.
        """
        try:
            code = callback_code(params)
            replaced = self.tokens
            if replaced is not None:
                # Revoked before the new sign-in exists: a provider that revokes the whole
                # grant with one token would otherwise take the new one with it.
                self.install(None)
                if replaced.refresh_token:
                    self._revoke_quietly(replaced.refresh_token)
            tokens = self.client.exchange(pending, code)
        except OAuthError as exc:
            self.set_error(str(exc))
            raise
        self.install(tokens)
        return tokens

    def _renew_on_timer(self, tokens: TokenSet) -> None:
        try:
            self.force_refresh(tokens.access_token)
        except Exception as exc:  # whatever failed, the timer must live on while signed in
            with self._lock:
                if self.tokens is not tokens:
                    return  # replaced or signed out meanwhile
                log.warning("Renewing the TradeStation token failed (%s); retrying",
                            exc.error if isinstance(exc, OAuthError) else type(exc).__name__)
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = threading.Timer(tokens.retry_in(),
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

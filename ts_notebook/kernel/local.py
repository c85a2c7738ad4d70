"""Sign-in with no Jupyter server: terminal IPython, VS Code, ``jupyter console``.

The same protocol client runs in this process. A one-shot listener on a default localhost
callback URL (``http://localhost:31022`` first) receives the browser after sign-in; a one-time
``/start/<random>`` address sets the browser's cookie and sends it to the provider, so the
sign-in is bound to that browser and no state sits in the widget. Tokens then live and renew
in this process.
"""

from __future__ import annotations

import html
import logging
import os
import secrets
import tempfile
import threading
import time
import webbrowser
from pathlib import Path
from urllib.parse import urlsplit

from ..config import Settings
from ..errors import ConfigError, OAuthError, hint
from ..loopback import relay_port
from ..oauth import (
    OAuthClient,
    PendingLogin,
    callback_code,
    callback_params,
    same_secret,
    sign_in_ended,
    strip_query,
)
from ..tokens import TokenSet
from .listener import CallbackListener
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
        self._page: Path | None = None
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
        # The start address is on the callback's own host, so the cookie set there comes back.
        self._origin = f"http://{urlsplit(redirect).netloc}" if listen else ""
        try:
            self.pending: PendingLogin = client.begin_login(redirect)
        except BaseException:
            self.close()
            raise

    @property
    def start_url(self) -> str | None:
        """Where the browser on this machine starts (one use), if listening."""
        return f"{self._origin}/start/{self._start_token}" if self.listener else None

    def open_browser(self) -> None:
        """Open the start address in the system browser without putting it on a command line
        (other users of the machine can read those): through a page only this user can read,
        which sends the browser on, as Jupyter opens its own address."""
        fd, path = tempfile.mkstemp(prefix="ts_notebook-signin-", suffix=".html")  # mode 0600
        with os.fdopen(fd, "w", encoding="utf-8") as page:
            target = html.escape(self.start_url or "")
            page.write(f'<!doctype html><meta http-equiv="refresh" content="0;url={target}">')
        self._page = Path(path)
        webbrowser.open(self._page.as_uri())

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
        """Release the callback port and remove the browser's start page; a wait in progress ends."""
        if self.listener is not None:
            self.listener.close()
        if self._page is not None:
            self._page.unlink(missing_ok=True)
        self.done.set()


class LocalSource(TokenSource):
    """Tokens kept in this process, renewed on a timer, single-flight across threads."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.load()
        self._client: OAuthClient | None = None
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._completing = threading.Lock()
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
            with self._completing:  # read and replace at once: a sign-in beside this one finds it done
                replaced = self.tokens
                if replaced is not None and replaced.refresh_token:
                    # Revoked before the new sign-in exists: a provider that revokes the whole
                    # grant with one token would otherwise take the new one with it. Its
                    # access token lives on meanwhile; nothing renews it.
                    self.install(replaced.without_refresh())
                else:
                    replaced = None
            if replaced is not None:
                self._revoke_quietly(replaced.refresh_token or "")
            tokens = self.client.exchange(pending, code)
        except OAuthError as exc:
            self.set_error(str(exc))
            raise
        except Exception as exc:  # a reply nobody foresaw: the widget says so, the wait ends
            log.warning("Finishing a TradeStation sign-in failed (%s)", type(exc).__name__)
            error = OAuthError("invalid_response", "the sign-in reply could not be used", hint("invalid_response"))
            self.set_error(str(error))
            raise error from exc
        with self._completing:
            overtaken = self.tokens
            self.install(tokens)
        if overtaken is not None and overtaken.refresh_token and overtaken.refresh_token != tokens.refresh_token:
            self._revoke_quietly(overtaken.refresh_token)  # another sign-in finished meanwhile: replaced too
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

"""Sign-in with no Jupyter server: terminal IPython, VS Code, ``jupyter console``.

The same protocol client runs in this process. A one-shot listener on a default localhost
callback URL (``http://localhost:31022`` first) receives the browser after sign-in; a one-time
``/start/<random>`` address sets the browser's cookie and sends it to the provider, so the
sign-in is bound to that browser and no state sits in the widget. Tokens then live and renew
in this process.
"""

from __future__ import annotations

import getpass
import logging
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from ..browser import open_privately
from ..config import Settings
from ..errors import ConfigError, OAuthError
from ..keeper import SUPERSEDED, Action, ArmTimer, Drop, Forget, Keep, Keeper, Notify, Refresh, Revoke
from ..loopback import relay_port
from ..oauth import (
    OAuthClient,
    PendingLogin,
    as_oauth_error,
    callback_code,
    callback_params,
    same_secret,
    sign_in_ended,
    strip_query,
)
from ..protocol import Snapshot
from ..store import open_memory
from ..tokens import TokenSet
from .frontend import display, has_frontend
from .listener import CallbackListener
from .state import LOGIN_TIMEOUT, Listener, SignOut, Status, TokenSource, wait_interruptibly

log = logging.getLogger(__name__)

# How long a thread waits for another thread's refresh (two token endpoint calls, at most).
REFRESH_WAIT = 60.0


class LocalLogin:
    """One in-process sign-in: a listener, a pending login, and its outcome.

    With a listener, the login is bound to the browser that opens its one-time start address
    (an unguessable path, usable once, that sets an httponly cookie the callback must carry):
    another program on this machine can neither read the authorize URL nor finish the login
    with a code of its own.
    """

    def __init__(self, source: LocalSource, listen: bool = True, scopes: str | None = None) -> None:
        self.source = source
        self.done = threading.Event()
        self.message = ""
        self.browser_key = secrets.token_urlsafe(32)
        self._start_token = secrets.token_urlsafe(32)
        self._started = False
        self._page: Path | None = None
        self._claim = threading.Lock()
        self._claimed = False
        client = source.client  # a missing key (or a bad scope) is reported before any port is taken
        asked = source.settings.login_scopes(scopes)
        redirect = source.settings.redirect_uri
        ports = source.settings.relay_ports
        if redirect and listen:
            port = relay_port(redirect)
            if port is None:
                raise ConfigError(
                    f"TS_REDIRECT_URI ({strip_query(redirect)}) is not an http://localhost:PORT "
                    "address, so this process cannot receive the browser's callback. Run "
                    "%ts_login --paste, or set TS_REDIRECT_URI to a registered localhost address."
                )
            ports = (port,)
        self.listener = CallbackListener(ports, self) if listen else None
        redirect = redirect or (self.listener.url if self.listener else f"http://localhost:{ports[0]}")
        # The start address is on the callback's own host, so the cookie set there comes back.
        self._origin = f"http://{urlsplit(redirect).netloc}" if listen else ""
        try:
            self.pending: PendingLogin = client.begin_login(redirect, scopes=asked)
        except BaseException:
            self.close()
            raise

    @property
    def started(self) -> bool:
        """Whether a browser has opened the start address."""
        return self._started

    @property
    def start_url(self) -> str | None:
        """Where the browser on this machine starts (one use), if listening."""
        return f"{self._origin}/start/{self._start_token}" if self.listener else None

    def open_browser(self) -> bool:
        """Open a fresh start address in the system browser, never on a command line; the
        address before it stops working (a click asks again). False when no browser could
        be started here, or the sign-in page was opened already."""
        with self._claim:
            if self._started or self.done.is_set():
                return False
            self._start_token = secrets.token_urlsafe(32)
        if self._page is not None:
            self._page.unlink(missing_ok=True)
        self._page = open_privately(self.start_url or "")
        return self._page is not None

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
        self._end(
            "This sign-in address was opened twice, so the sign-in was cancelled (only one browser may "
            "use it). Run %ts_login again."
        )
        return None

    def complete(self, params: dict[str, str], browser_key: str | None) -> tuple[bool, str, str]:
        """Finish with a callback that reached the listener, from the browser that started
        the login; returns (ok, page title, detail)."""
        if not browser_key or not same_secret(browser_key, self.browser_key):
            return (
                False,
                "Sign-in not accepted",
                (
                    "This sign-in was not started in this browser. Open the address "
                    "%ts_login gave (or click its button) here, or run %ts_login again."
                ),
            )
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
                return (
                    False,
                    "Sign-in not accepted",
                    (
                        "This address does not belong to the sign-in waiting here "
                        "(unknown or expired). Run %ts_login again."
                    ),
                )
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
    """Tokens kept in this process: the keeper's policy carried out with threads (a timer
    thread, and whichever thread asks for a refresh). A sign-in kept by an earlier run is
    taken up and renewed when it is made."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.load()
        self.memory = open_memory(self.settings)
        self._client: OAuthClient | None = None
        self.keeper = Keeper()
        self._lock = threading.Lock()  # the keeper, the version, the timer and the refresh in flight
        self._notify_lock = threading.Lock()  # listeners hear one change at a time, newest only
        self._delivered = -1
        self._listeners: list[Listener] = []
        self._timer: threading.Timer | None = None
        self._closed = False
        self._inflight: threading.Event | None = None
        self.revoke_failure: str | None = None  # why the last revocation failed, if it did
        self.version = 0
        self.pending_login: LocalLogin | None = None  # the sign-in waiting for its browser, if any
        self._login_lock = threading.Lock()
        self._restore()

    def _restore(self) -> None:
        mark = self.keeper.restoring()
        tokens, notice = self.memory.restore()
        if tokens is not None:
            self._feed(lambda: self.keeper.restored(tokens, time.time(), mark))
        elif notice and mark == self.keeper.events:
            self.set_error(notice)

    @property
    def client(self) -> OAuthClient:
        """The protocol client (needs TS_CLIENT_ID)."""
        if self._client is None:
            self._client = OAuthClient(self.settings)
        return self._client

    @property
    def tokens(self) -> TokenSet | None:
        """The current sign-in's tokens, if any."""
        return self.keeper.tokens

    @property
    def snapshot(self) -> Snapshot:
        """The current state, without any I/O (as ``BrokerSource.snapshot``)."""
        return Snapshot.of(
            self.version,
            self.keeper.tokens,
            self.settings,
            self.keeper.error,
            login_pending=self.pending_login is not None and not self.pending_login.done.is_set(),
            configured=bool(self.settings.client_id),
            kept=self.memory.kept,
        )

    # -- the keeper's actions, on threads -----------------------------------------------------------

    def _feed(self, event: Callable[[], list[Action]]) -> Exception | None:
        """Hand one event to the keeper under the lock, then carry out its actions outside it
        (listeners, network calls). Returns a refresh's passing failure, if one ran here."""
        with self._lock:
            actions = event()
            for action in actions:
                if isinstance(action, Notify):
                    self.version += 1
                elif isinstance(action, ArmTimer):
                    self._arm(action.delay)
                elif isinstance(action, Refresh):
                    self._inflight = threading.Event()
            inflight, snap = self._inflight, self.snapshot
        failure = None
        for action in actions:
            if isinstance(action, Notify):
                self._notify(snap)
            elif isinstance(action, Refresh):
                failure = self._refresh(action.tokens, inflight)
            elif isinstance(action, Revoke):
                self._revoke_quietly(action.refresh_token)
            elif isinstance(action, Drop):
                log.info(SUPERSEDED, "")
            elif isinstance(action, Keep):
                self.memory.remember(action.tokens)
            elif isinstance(action, Forget):
                self.memory.forget(action.refresh_token)
        return failure

    def _arm(self, delay: float | None) -> None:
        # Under self._lock.
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if delay is not None and not self._closed:
            self._timer = threading.Timer(delay, self._feed, args=(self.keeper.timer_fired,))
            self._timer.daemon = True
            self._timer.start()

    def _refresh(self, tokens: TokenSet, done: threading.Event | None) -> Exception | None:
        try:
            renewed, fetched = self.memory.renew(tokens, self.client.refresh)
        except Exception as exc:  # whatever failed, the keeper decides: retry, or the sign-in ended
            ended = sign_in_ended(exc)
            log.warning(
                "Renewing the TradeStation token failed (%s)%s",
                exc.error if isinstance(exc, OAuthError) else type(exc).__name__,
                "" if ended else "; retrying",
            )
            self._feed(lambda: self.keeper.refresh_failed(tokens, time.time(), ended))
            return None if ended else exc
        else:
            self._feed(lambda: self.keeper.refreshed(tokens, renewed, time.time(), fetched))
            return None
        finally:
            if done is not None:
                done.set()

    def _notify(self, snap: Snapshot) -> None:
        with self._notify_lock:
            if snap.version <= self._delivered:
                return  # a newer state was told already
            self._delivered = snap.version
            for listener in list(self._listeners):
                try:
                    listener(snap)
                except Exception:  # a broken listener must not stop the others
                    log.debug("ts_notebook listener failed", exc_info=True)

    def _revoke_quietly(self, refresh_token: str) -> None:
        self.revoke_failure = None
        try:
            self.client.revoke(refresh_token)
        except OAuthError as exc:
            log.warning("Revoking the refresh token failed (%s); it is forgotten here anyway", exc.error)
            self.revoke_failure = exc.reason

    # -- what the kernel's API calls ------------------------------------------------------------------

    def set_error(self, message: str) -> None:
        """Record why a sign-in failed, for the widget."""
        self._feed(lambda: self.keeper.failed(message))

    def complete_login(self, pending: PendingLogin, params: dict[str, str]) -> TokenSet:
        """Finish a claimed login (as the server's broker does): exchange the code and make
        the result the current sign-in (the one it replaces is retired as the keeper says).

        Raises:
            OAuthError: the provider sent an error, or the exchange failed; the widget says why.
        """
        try:
            code = callback_code(params)
            tokens = self.client.exchange(pending, code)
        except Exception as exc:
            error = as_oauth_error(exc)
            self.set_error(str(error))
            if error is exc:
                raise
            raise error from exc
        self._feed(lambda: self.keeper.signed_in(tokens, time.time()))
        return tokens

    def current(self) -> Snapshot:
        """The state now; renews first when the token is about to expire."""
        snap = self.snapshot
        if snap.signed_in and not snap.fresh():
            return self.force_refresh(snap.access_token or "")
        return snap

    def force_refresh(self, stale: str) -> Snapshot:
        """Renew once however many threads ask; a thread whose token was replaced meanwhile
        gets the new one with nothing sent, others wait for the refresh under way.

        Raises:
            OAuthError: the renewal this thread ran failed for a passing reason.
        """
        failure = self._feed(lambda: self.keeper.refresh_wanted(stale))
        if failure is not None:
            raise failure
        inflight = self._inflight
        if inflight is not None and self.keeper.refreshing is not None:
            inflight.wait(REFRESH_WAIT)
        return self.snapshot

    # -- signing in ---------------------------------------------------------------------------------

    def login(
        self, paste: bool = False, timeout: float = LOGIN_TIMEOUT, open_browser: bool = True, scopes: str | None = None
    ) -> None:
        """Sign in within this process: the widget in a notebook (the wait runs in the
        background), else the address in the terminal and a wait for the browser."""
        if has_frontend() and not paste:
            self._widget_login(timeout, scopes)
        else:
            self._terminal_login(paste, timeout, open_browser, scopes)

    def _widget_login(self, timeout: float, scopes: str | None) -> None:
        from .widget import LoginWidget

        attempt = self._new_login(listen=True, scopes=scopes)
        # A button, not a link: the start address is a secret, and widget state is broadcast
        # to every frontend and may be saved in the notebook. A click asks this kernel for a
        # fresh address and opens it in this machine's browser.
        display(LoginWidget(self, open_sign_in=lambda: self._open_sign_in(attempt)))

        def wait_then_release() -> None:
            finished = attempt.wait(timeout)
            if self._end_login(attempt) and not finished:  # ended first, so the widget stops "Waiting"
                self.set_error(f"No sign-in within {timeout:.0f} s. Run %ts_login again.")

        threading.Thread(target=wait_then_release, name="ts_notebook-login", daemon=True).start()

    def _open_sign_in(self, attempt: LocalLogin) -> str | None:
        """The widget's button was clicked; what to tell the person if nothing opened."""
        if attempt.done.is_set() or attempt is not self.pending_login:
            return "This sign-in has ended. Run %ts_login again."
        if attempt.open_browser():
            return None
        if attempt.started:
            return "TradeStation's sign-in page is open in your browser already; finish there, or run %ts_login again."
        return (
            "No browser could be started from this kernel. Run %ts_login --paste to sign in from a browser "
            "on another machine."
        )

    def _terminal_login(self, paste: bool, timeout: float, open_browser: bool, scopes: str | None) -> None:
        """Blocks until signed in, timeout or Ctrl-C; the port is freed whatever happens."""
        if self.current().signed_in and not scopes:
            print(f"{Status.of(self.current())}\nRun %ts_logout to sign out.")
            return
        attempt = self._new_login(listen=not paste, scopes=scopes)
        try:
            if open_browser and not paste:
                attempt.open_browser()  # a fresh start address: print the one it opened
            url = attempt.start_url or attempt.pending.authorize_url
            print(f"Sign in to TradeStation in your browser:\n  {url}")
            if paste:
                # getpass: the address carries the code, which must not echo into a saved output.
                address = getpass.getpass("Then paste the address your browser ended on: ")
                attempt.complete_pasted(address)
            else:
                print(
                    f"Waiting for the browser on {attempt.listener.url if attempt.listener else ''} "
                    "(Ctrl-C to cancel)...",
                    flush=True,
                )
                if not attempt.wait(timeout):
                    print(f"No sign-in within {timeout:.0f} s. Run %ts_login again.")
                    return
            print(attempt.message or "Sign-in not completed. Run %ts_login again.")
        except KeyboardInterrupt:
            print("Sign-in cancelled.")
        finally:
            self._end_login(attempt)

    def _new_login(self, listen: bool, scopes: str | None = None) -> LocalLogin:
        with self._login_lock:
            if self.pending_login is not None:
                self.pending_login.close()  # a newer %ts_login replaces a waiting one
            self.pending_login = LocalLogin(self, listen=listen, scopes=scopes)
            return self.pending_login

    def _end_login(self, attempt: LocalLogin) -> bool:
        """Release the attempt's port; True if it was still the current login."""
        attempt.close()
        with self._login_lock:
            current = self.pending_login is attempt
            if current:
                self.pending_login = None
        return current

    def logout(self) -> SignOut:
        """Forget the tokens and revoke the refresh token."""
        was_signed_in = self.keeper.tokens is not None
        self.revoke_failure = None
        self._feed(self.keeper.signed_out)
        return SignOut(was_signed_in, self.revoke_failure)

    def close(self) -> None:
        """Stop renewing (the tokens stay, and stay kept): for a source that is done with."""
        with self._lock:
            self._closed = True
            self._arm(None)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(snapshot)`` on every change (from whichever thread made it)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)

"""Sign-in with no Jupyter server: terminal IPython, VS Code, ``jupyter console``.

The same protocol client runs in this process, and so does the keeper, driven by threads
(:class:`~ts_notebook.signin.ThreadSignIn`): tokens live and renew here. The page flow that
signs in (a listener on a localhost callback address, a one-time start address) is
:mod:`ts_notebook.kernel.local_login`.
"""

from __future__ import annotations

import getpass
import logging
import threading

from ..config import Settings
from ..oauth import OAuthClient
from ..pending import PendingLogin
from ..protocol import Snapshot
from ..signin import ThreadSignIn
from ..store import open_store
from ..tokens import TokenSet
from .frontend import display, has_frontend
from .local_login import LocalLogin
from .state import LOGIN_TIMEOUT, Listener, Listeners, SignOut, Status, TokenSource

log = logging.getLogger(__name__)


class LocalSource(TokenSource):
    """Tokens kept in this process: the keeper's policy carried out with threads (a timer
    thread, and whichever thread asks for a refresh). A sign-in kept by an earlier run is
    taken up and renewed when it is made."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.load()
        self._client: OAuthClient | None = None
        self._listeners = Listeners()
        self._version_lock = threading.Lock()
        self.version = 0
        self.pending_login: LocalLogin | None = None  # the sign-in waiting for its browser, if any
        self._login_lock = threading.Lock()
        self.signin = ThreadSignIn(open_store(self.settings), lambda: self.client, self._changed)
        self.signin.restore_now()

    @property
    def client(self) -> OAuthClient:
        """The protocol client (needs TS_CLIENT_ID)."""
        if self._client is None:
            self._client = OAuthClient(self.settings)
        return self._client

    @property
    def tokens(self) -> TokenSet | None:
        """The current sign-in's tokens, if any."""
        return self.signin.tokens

    @property
    def snapshot(self) -> Snapshot:
        """The current state, without any I/O (as ``BrokerSource.snapshot``)."""
        return Snapshot.of(
            self.version,
            self.signin.tokens,
            self.settings,
            self.signin.error,
            login_pending=self.pending_login is not None and not self.pending_login.done.is_set(),
            configured=bool(self.settings.client_id),
            kept=self.signin.kept,
            renews=self.signin.renews,
        )

    def _changed(self) -> None:
        with self._version_lock:
            self.version += 1
            snap = self.snapshot
        self._listeners.tell(snap)

    # -- what the kernel's API calls ------------------------------------------------------------------

    def set_error(self, message: str) -> None:
        """Record why a sign-in failed, for the widget."""
        self.signin.fail(message)

    def complete_login(self, pending: PendingLogin, code: str) -> TokenSet:
        """Finish a claimed login (as the server's broker does): exchange the code and make
        the result the current sign-in (the one it replaces is retired as the keeper says).

        Raises:
            OAuthError: the exchange failed; the widget says why.
        """
        return self.signin.complete_now(pending, code)

    def begin(self, listen: bool = True, scopes: str | None = None) -> LocalLogin:
        """A new in-process login (not yet the one the widget and ``%ts_status`` follow)."""
        return LocalLogin(self.settings, self.client, self.complete_login, self.set_error, listen, scopes)

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
        self.signin.refresh(stale)
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
            self.pending_login = self.begin(listen=listen, scopes=scopes)
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
        was_signed_in = self.signin.tokens is not None
        return SignOut(was_signed_in, self.signin.logout_now())

    def close(self) -> None:
        """Stop renewing (the tokens stay, and stay kept): for a source that is done with."""
        self.signin.close()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(snapshot)`` on every change (from whichever thread made it)."""
        self._listeners.add(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        self._listeners.remove(listener)

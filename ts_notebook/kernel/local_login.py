"""The in-process sign-in's page flow (no Jupyter server: terminal IPython, VS Code,
``jupyter console``): a one-shot listener on a localhost callback address, a one-time start
address, and the pending login they finish.

A one-time ``/start/<random>`` address sets the browser's cookie and sends it to the provider,
so the sign-in is bound to that browser and no state sits in the widget. The claim itself is
the pending-login table's (:mod:`ts_notebook.pending`), as on a server.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from ..browser import open_privately
from ..config import Settings
from ..errors import ConfigError, OAuthError
from ..loopback import relay_port
from ..oauth import OAuthClient, callback_code, callback_params, strip_query
from ..pending import Entry, LoginRejected, PendingLogin, PendingLogins
from ..tokens import TokenSet, same_secret
from .listener import CallbackListener
from .state import wait_interruptibly

# Finish a claimed login: exchange its code and make the result the current sign-in.
Complete = Callable[[PendingLogin, str], TokenSet]


class LocalLogin:
    """One in-process sign-in: a listener, a pending login, and its outcome.

    With a listener, the login is bound to the browser that opens its one-time start address
    (an unguessable path, usable once, that sets an httponly cookie the callback must carry):
    another program on this machine can neither read the authorize URL nor finish the login
    with a code of its own.

    Args:
        settings: the callback address and ports, and the scopes.
        client: the protocol client that starts the login.
        complete: what finishes it once claimed (the token source's exchange).
        on_end: told why the login ended without a sign-in, when it did (for the widget).
        listen: False for a login finished by pasting the address the browser ended on.
        scopes: the scopes to ask for (default: the setting's).
    """

    def __init__(
        self,
        settings: Settings,
        client: OAuthClient,
        complete: Complete,
        on_end: Callable[[str], None],
        listen: bool = True,
        scopes: str | None = None,
    ) -> None:
        self._complete = complete
        self._on_end = on_end
        self.done = threading.Event()
        self.message = ""
        self.browser_key = secrets.token_urlsafe(32)
        self._start_token = secrets.token_urlsafe(32)
        self._started = False
        self._page: Path | None = None
        self._lock = threading.Lock()  # the table, the start token
        self._table = PendingLogins("this process", limit=1)
        asked = settings.login_scopes(scopes)  # a bad scope is reported before any port is taken
        redirect = settings.redirect_uri
        ports = settings.relay_ports
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
        self._table.add(Entry(self.pending, self.browser_key))

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
        with self._lock:
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
        with self._lock:
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
        return self._finish(params, browser_key, bound=True)

    def complete_pasted(self, address: str) -> None:
        """Finish with the address the browser ended on (pasted by the user)."""
        try:
            ok, _, detail = self._finish(callback_params(address), None, bound=False)
        except OAuthError as exc:
            ok, detail = False, str(exc)
        if not ok and not self.message:
            self.message = detail

    def _finish(self, params: dict[str, str], browser_key: str | None, bound: bool) -> tuple[bool, str, str]:
        with self._lock:  # two callbacks at once: one claim, one exchange
            try:
                if self.done.is_set():
                    self._table.clear()
                pending = self._table.claim(params.get("state", ""), browser_key, time.monotonic(), bound)
            except LoginRejected as exc:
                return False, "Sign-in not accepted", str(exc)
        try:
            code = callback_code(params)
        except OAuthError as exc:  # the provider's own error (access_denied ...): the login ends
            self._end(str(exc))
            return False, "Sign-in not completed", str(exc)
        try:
            tokens = self._complete(pending, code)
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
        self._on_end(message)

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

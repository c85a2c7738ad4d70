"""The kernel's public objects: one token source, ``session``, ``sim``, ``auth`` and the
``login`` / ``logout`` / ``status`` calls behind the magics.
"""

from __future__ import annotations

import getpass
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

from ..errors import BrokerError
from ..protocol import LOGIN, Snapshot
from .broker_client import BrokerClient, BrokerSource, find_broker
from .local import LOGIN_TIMEOUT, LocalLogin, LocalSource, wait_interruptibly
from .session import TSAuth, TSSession
from .widget import LoginWidget

_lock = threading.Lock()
_source: BrokerSource | LocalSource | None = None
_objects: dict[str, object] = {}


def source() -> BrokerSource | LocalSource:
    """This kernel's token source: its Jupyter server's broker when one is alive, else this
    process (terminal IPython, VS Code, a kernel whose server lacks ts_notebook).

    Raises:
        ConfigError: the settings for an in-process sign-in are malformed.
    """
    global _source
    with _lock:
        if _source is None:
            _source = _pick_source()
        return _source


def _pick_source() -> BrokerSource | LocalSource:
    try:
        info = find_broker()
    except BrokerError as exc:
        print(f"ts_notebook: {exc} Signing in within this process instead.", file=sys.stderr)
        return LocalSource()
    if info is None:
        return LocalSource()
    if not info.server_alive():
        print("ts_notebook: The Jupyter server that started this kernel has stopped. Signing in within this "
              "process instead.", file=sys.stderr)
        return LocalSource()
    client = BrokerClient(info)
    # A live server that does not answer is never replaced by an in-process sign-in (which
    # would lack the server's client secret): the error says what failed, and the next call
    # tries again.
    client.probe()
    return BrokerSource(client)


def _shared(name: str, make: Callable[[], object]) -> object:
    with _lock:
        if name not in _objects:
            _objects[name] = make()
        return _objects[name]


def session() -> TSSession:
    """``ts.session``: live or simulator API, as TS_ENV says."""
    return _shared("session", lambda: TSSession(source))  # type: ignore[return-value]


def sim() -> TSSession:
    """``ts.sim``: always the simulator API."""
    return _shared("sim", lambda: TSSession(source, sim=True))  # type: ignore[return-value]


def auth() -> TSAuth:
    """``ts.auth``: the bearer auth alone, for ``requests.get(url, auth=ts.auth)``."""
    return _shared("auth", lambda: TSAuth(source))  # type: ignore[return-value]


@dataclass(frozen=True)
class Status:
    """The sign-in state as a person reads it: no token in it."""

    signed_in: bool
    user: str = ""
    scopes: tuple[str, ...] = ()
    expires_at: float = 0.0
    env: str = "live"
    api_url: str = ""
    error: str | None = None
    kept: str = ""

    @classmethod
    def of(cls, snap: Snapshot) -> Status:
        """Summarise a snapshot."""
        return cls(
            signed_in=snap.signed_in,
            user=snap.display_name if snap.signed_in else "",
            scopes=snap.scopes,
            expires_at=snap.expires_at if snap.signed_in else 0.0,
            env=snap.env,
            api_url=snap.sim_api_url if snap.env == "sim" else snap.api_url,
            error=snap.error,
            kept=snap.kept,
        )

    def __str__(self) -> str:
        if not self.signed_in:
            text = f"Not signed in to TradeStation. {self.error or 'Run %ts_login to sign in.'}"
        else:
            until = time.strftime("%H:%M", time.localtime(self.expires_at))
            text = (f"Signed in to TradeStation as {self.user} ({self.env}: {self.api_url}); "
                    f"scopes: {' '.join(self.scopes)}; token valid until {until}, renewed automatically.")
        return f"{text}\n{self.kept}" if self.kept else text

    def _repr_pretty_(self, p, cycle: bool) -> None:  # type: ignore[no-untyped-def]
        p.text(str(self))

    def _repr_html_(self) -> str:
        return f"<span>{escape(str(self))}</span>"


def status() -> Status:
    """Who is signed in, with which scopes, and until when."""
    return Status.of(source().current())


def login(paste: bool = False, timeout: float = LOGIN_TIMEOUT, open_browser: bool = True) -> None:
    """Sign in: the widget in a notebook, plain text in a terminal.

    Args:
        paste: ask for the address the browser ended on instead of listening for it (a
            browser on another machine than this kernel).
        timeout: seconds to wait for the browser.
        open_browser: open the sign-in page with the system browser (terminal, no server).
    """
    src = source()
    if isinstance(src, BrokerSource):
        info = src.client.info
        if _has_frontend():
            _display(LoginWidget(src, login_path=info.login_path, paste_path=info.callback_path))
        else:
            _wait_for_broker(src, f"{info.url.rstrip('/')}/{LOGIN}", timeout)
        return
    if _has_frontend() and not paste:
        _widget_login(src, timeout)
    else:
        _terminal_login(src, paste, timeout, open_browser)


def _has_frontend() -> bool:
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None) is not None


def _display(widget: object) -> None:
    from IPython.display import display

    display(widget)


def _wait_for_broker(src: BrokerSource, url: str, timeout: float) -> None:
    """A terminal whose environment names a live broker (a Jupyter terminal): sign in there."""
    if src.current().signed_in:
        print(Status.of(src.current()))
        return
    signed_in = threading.Event()
    listener = lambda snap: snap.signed_in and signed_in.set()  # noqa: E731
    src.add_listener(listener)
    print(f"Open {url} in the browser where you use Jupyter and sign in (Ctrl-C to stop waiting).")
    try:
        if wait_interruptibly(signed_in, timeout):
            print(Status.of(src.current()))
        else:
            print(f"No sign-in within {timeout:.0f} s. Run %ts_login again.")
    except KeyboardInterrupt:
        print("Stopped waiting. Run %ts_login again to sign in.")
    finally:
        src.remove_listener(listener)


def _widget_login(src: LocalSource, timeout: float) -> None:
    """A kernel with a frontend but no server: the widget, with the wait in the background."""
    attempt = _new_login(src, listen=True)
    _display(LoginWidget(src, login_path=attempt.start_url or "#"))

    def wait_then_release() -> None:
        finished = attempt.wait(timeout)
        if _end_login(src, attempt) and not finished:  # ended first, so the widget stops "Waiting"
            src.set_error(f"No sign-in within {timeout:.0f} s. Run %ts_login again.")

    threading.Thread(target=wait_then_release, name="ts_notebook-login", daemon=True).start()


def _terminal_login(src: LocalSource, paste: bool, timeout: float, open_browser: bool) -> None:
    """Blocks until signed in, timeout or Ctrl-C; the port is freed whatever happens."""
    if src.current().signed_in:
        print(f"{Status.of(src.current())}\nRun %ts_logout to sign out.")
        return
    attempt = _new_login(src, listen=not paste)
    try:
        url = attempt.start_url or attempt.pending.authorize_url
        print(f"Sign in to TradeStation in your browser:\n  {url}")
        if paste:
            # getpass: the address carries the code, which must not echo into a saved output.
            address = getpass.getpass("Then paste the address your browser ended on: ")
            attempt.complete_pasted(address)
        else:
            if open_browser:
                attempt.open_browser()
            print(f"Waiting for the browser on {attempt.listener.url if attempt.listener else ''} "
                  "(Ctrl-C to cancel)...", flush=True)
            if not attempt.wait(timeout):
                print(f"No sign-in within {timeout:.0f} s. Run %ts_login again.")
                return
        print(attempt.message or "Sign-in not completed. Run %ts_login again.")
    except KeyboardInterrupt:
        print("Sign-in cancelled.")
    finally:
        _end_login(src, attempt)


def _new_login(src: LocalSource, listen: bool) -> LocalLogin:
    with _lock:
        if src.login is not None:
            src.login.close()  # a newer %ts_login replaces a waiting one
        src.login = LocalLogin(src, listen=listen)
        return src.login


def _end_login(src: LocalSource, attempt: LocalLogin) -> bool:
    """Release the attempt's port; True if it was still the current login."""
    attempt.close()
    with _lock:
        current = src.login is attempt
        if current:
            src.login = None
    return current


def logout() -> Status:
    """Sign out everywhere (every kernel of this server) and revoke the refresh token."""
    return Status.of(source().logout())

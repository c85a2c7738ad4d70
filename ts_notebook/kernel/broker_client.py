"""The kernel's side of the broker: find it, call it over loopback, and watch it.

One daemon thread per kernel long-polls ``api/token?since=<version>``; the server answers at
once on any change, so sign-in, renewal and sign-out reach a kernel within milliseconds even
while a cell is running. Requests read the cached snapshot and never wait on the broker
unless the cache cannot be trusted.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import requests
from requests.adapters import HTTPAdapter

from .. import backoff
from ..config import PROVIDER_STEP, parse_scopes
from ..errors import BrokerError
from ..keeper import replaced
from ..longpoll import LONGPOLL, LONGPOLL_GRACE, Follower
from ..protocol import ENV_VAR, KEY_HEADER, LOGIN, OtherVersion, RuntimeInfo, Snapshot
from .frontend import display, has_frontend
from .state import LOGIN_TIMEOUT, Listener, Listeners, SignOut, Status, TokenSource, wait_interruptibly

log = logging.getLogger(__name__)

# (connect, read) seconds for every other broker call; a refresh may wait on the provider's
# token endpoint and a JWKS refetch.
CALL_TIMEOUT = (3.0, PROVIDER_STEP + 5.0)
# A kernel's first call to a live server that does not answer is retried PROBE_RETRIES times,
# after PROBE_FIRST s doubling (a server busy starting, say), before the kernel says what failed.
PROBE_RETRIES, PROBE_FIRST = 5, 0.25


def find_broker(environ: Mapping[str, str] | None = None) -> RuntimeInfo | None:
    """The broker named by ``TS_NOTEBOOK_BROKER``, or None when no server set one.

    Raises:
        BrokerError: the variable names a file that is gone, unreadable or of another version
            (a server that has stopped, or a different ts_notebook).
    """
    path = (os.environ if environ is None else environ).get(ENV_VAR)
    if not path:
        return None
    try:
        return RuntimeInfo.read(path)
    except OtherVersion as exc:
        raise BrokerError(
            "This kernel's Jupyter server runs another version of ts_notebook. Install the same "
            "version in the server's and the kernel's environment."
        ) from exc
    except (OSError, ValueError) as exc:
        raise BrokerError(
            f"The Jupyter server that started this kernel is gone ({ENV_VAR} names a file that "
            "cannot be read). Restart the kernel from a running Jupyter server."
        ) from exc


class PinnedAdapter(HTTPAdapter):
    """HTTPS to the server's own certificate, matched by fingerprint instead of CA and name
    (the certificate names the server's public host, and may be self-signed)."""

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256
        super().__init__()

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, False, cert)  # the fingerprint is the check, not CA and name
        conn.assert_fingerprint = self.sha256


def failure_reason(exc: BaseException) -> str:
    """What went wrong under a requests exception, in a few words (no URL, no secret)."""
    if "fingerprints did not match" in str(exc).lower():
        return "its TLS certificate is not the one it wrote for its kernels"
    todo, seen = [exc], set()
    while todo:
        err = todo.pop(0)
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, ssl.SSLError):
            return f"TLS: {getattr(err, 'verify_message', None) or err.reason or 'handshake failed'}"
        if isinstance(err, OSError) and err.strerror:
            return err.strerror
        todo += [
            a
            for a in (*err.args, getattr(err, "reason", None), err.__cause__, err.__context__)
            if isinstance(a, BaseException)
        ]
    return type(exc).__name__


class BrokerClient:
    """Plain HTTP calls to the broker API, with the runtime key."""

    def __init__(self, info: RuntimeInfo) -> None:
        self.info = info
        self.http = requests.Session()
        self.http.trust_env = False  # a corporate HTTP_PROXY must never see loopback calls
        self.http.headers[KEY_HEADER] = info.key
        if info.url.startswith("https://") and info.cert_sha256:
            self.http.mount("https://", PinnedAdapter(info.cert_sha256))
        elif info.url.startswith("http+unix://"):
            from requests_unixsocket import UnixAdapter  # only for a server on a Unix socket

            self.http.mount("http+unix://", UnixAdapter())

    def call(self, method: str, path: str, timeout: Any = CALL_TIMEOUT, **kwargs: Any) -> dict[str, Any]:
        """Call ``ts_notebook/api/<path>`` and return its JSON reply."""
        url = self.info.api_url(path)
        try:
            resp = self.http.request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise BrokerError(
                f"Cannot reach this kernel's Jupyter server at {self.info.url} ({failure_reason(exc)}). If the "
                "server was stopped, start it again and restart the kernel."
            ) from exc
        try:
            data = resp.json()
        except ValueError:
            data = {}
        if resp.status_code != 200 or not isinstance(data, dict):
            message = data.get("message") if isinstance(data, dict) else None
            raise BrokerError(f"The Jupyter server refused the request: {message or f'HTTP {resp.status_code}'}")
        return data

    def probe(self) -> None:
        """Ask for the status, retrying with backoff while the server does not answer.

        Raises:
            BrokerError: it still did not answer after the last retry; says what failed.
        """
        waited = 0.0
        for failures in range(1, PROBE_RETRIES + 2):
            try:
                self.call("GET", "status", timeout=(2.0, 10.0))
                return
            except BrokerError as exc:
                if failures > PROBE_RETRIES:
                    why = failure_reason(exc.__cause__) if exc.__cause__ else str(exc)
                    raise BrokerError(
                        f"This kernel's Jupyter server is running but did not answer at {self.info.url} ({why}; "
                        f"tried {failures} times over {waited:.0f} s). Check the server and its log, then run "
                        "the command again."
                    ) from exc
                pause = backoff.delay(failures, PROBE_FIRST, 60.0)
                time.sleep(pause)
                waited += pause

    def token(self, since: int | None = None) -> dict[str, Any]:
        """The state with the access token; with ``since``, wait for a change past it."""
        if since is None:
            return self.call("GET", "token")
        return self.call(
            "GET",
            "token",
            params={"since": since, "timeout": LONGPOLL},
            timeout=(CALL_TIMEOUT[0], LONGPOLL + LONGPOLL_GRACE),
        )

    def refresh(self, stale: str) -> dict[str, Any]:
        """Ask for a renewal because ``stale`` was refused."""
        return self.call("POST", "refresh", json={"stale": stale})

    def logout(self) -> dict[str, Any]:
        """Sign out on the server (for every kernel)."""
        return self.call("POST", "logout", json={})


class BrokerSource(TokenSource):
    """Keeps the kernel's snapshot current from the broker, pushed by long-poll."""

    def __init__(self, client: BrokerClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._listeners = Listeners()
        self._thread: threading.Thread | None = None
        self._healthy = False

    @property
    def snapshot(self) -> Snapshot | None:
        """The last snapshot received, without any I/O."""
        return self._snapshot

    def _update(self, data: dict[str, Any]) -> Snapshot:
        try:
            snap = Snapshot.from_wire(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise BrokerError(
                "The Jupyter server sent a reply this ts_notebook does not understand. "
                "Install the same version in the server's and the kernel's environment."
            ) from exc
        with self._lock:
            if self._snapshot is not None and snap.version < self._snapshot.version:
                return self._snapshot  # an older answer that arrived late (versions only grow)
            self._snapshot = snap
        self._listeners.tell(snap)
        return snap

    def _ensure_watcher(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._watch, name="ts_notebook-watcher", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        """Follow the server's state for as long as the kernel runs (see ts_notebook.longpoll)."""
        follower = Follower()
        while True:
            snap = self._snapshot
            try:
                self._update(self.client.token(since=snap.version if snap else None))
            except Exception as exc:  # this thread must never die or print: it only backs off
                self._healthy = False
                log.debug("ts_notebook watcher: %s", exc)
                time.sleep(follower.failed(time.monotonic())[0])
                continue
            self._healthy = True
            follower.answered()

    def current(self) -> Snapshot:
        """The cached snapshot; asks the broker only when the cache is stale or unwatched."""
        self._ensure_watcher()
        snap = self._snapshot
        if snap is not None and self._healthy and (snap.fresh() or not snap.signed_in):
            return snap
        snap = self._update(self.client.token())
        if snap.signed_in and not snap.fresh():
            snap = self.force_refresh(snap.access_token or "")
        return snap

    def force_refresh(self, stale: str) -> Snapshot:
        """Renew through the broker; threads that find the token already replaced skip it."""
        with self._refresh_lock:
            snap = self._snapshot
            if snap is not None and replaced(stale, snap.access_token) and snap.fresh():
                return snap
            return self._update(self.client.refresh(stale))

    def login(
        self, paste: bool = False, timeout: float = LOGIN_TIMEOUT, open_browser: bool = True, scopes: str | None = None
    ) -> None:
        """The server signs in: its widget in a notebook (the paste form is in it); in a
        terminal inside Jupyter, where to sign in, then wait for it."""
        info = self.client.info
        if scopes:
            parse_scopes(scopes)  # a bad word is said here, not on the server's page
        query = f"?{urlencode({'scopes': scopes})}" if scopes else ""
        if has_frontend():
            from .widget import LoginWidget

            display(LoginWidget(self, login_path=info.login_path + query, paste_path=info.callback_path))
            return
        if self.current().signed_in and not scopes:
            print(Status.of(self.current()))
            return
        signed_in = threading.Event()
        listener = lambda snap: snap.signed_in and signed_in.set()  # noqa: E731
        self.add_listener(listener)
        print(
            f"Open {info.url.rstrip('/')}/{LOGIN}{query} in the browser where you use Jupyter and sign in "
            "(Ctrl-C to stop waiting)."
        )
        try:
            if wait_interruptibly(signed_in, timeout):
                print(Status.of(self.current()))
            else:
                print(f"No sign-in within {timeout:.0f} s. Run %ts_login again.")
        except KeyboardInterrupt:
            print("Stopped waiting. Run %ts_login again to sign in.")
        finally:
            self.remove_listener(listener)

    def logout(self) -> SignOut:
        """Sign out on the server; every kernel hears of it through its watcher."""
        reply = self.client.logout()
        self._update(reply)
        return SignOut(bool(reply.get("was_signed_in")), reply.get("revoke_failure"))

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(snapshot)`` from the watcher thread on every change."""
        self._ensure_watcher()
        self._listeners.add(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        self._listeners.remove(listener)

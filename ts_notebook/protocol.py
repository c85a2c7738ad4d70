"""The server-to-kernel protocol, in one place: how a kernel finds its server's broker (the
runtime file and the variable that names it), how it proves itself (the key header), the
routes, the long-poll timings, and the sign-in state as it travels (:class:`Snapshot`).

Both sides import this; it imports no Jupyter.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .tokens import TokenSet, display_name, is_fresh

# Kernels find their server's runtime file through this variable (kernels started after the
# server inherit it); the file's "protocol" must equal VERSION.
ENV_VAR = "TS_NOTEBOOK_BROKER"
VERSION = 1
# Kernel calls carry the runtime file's key in this header.
KEY_HEADER = "X-TS-Notebook-Key"

# Routes under the server's base_url.
LOGIN = "ts_notebook/login"
CALLBACK = "ts_notebook/callback"
API = "ts_notebook/api"  # + /token[?since=V&timeout=S], /refresh, /logout, /status

# The server answers a long-poll after LONGPOLL seconds when nothing changes (a kernel may ask
# for less, never more than LONGPOLL_MAX); the kernel waits LONGPOLL_GRACE longer before it
# calls the connection dead.
LONGPOLL = 25.0
LONGPOLL_MAX = 60.0
LONGPOLL_GRACE = 10.0


class OtherVersion(ValueError):
    """A runtime file written by another version of this protocol."""


@dataclass(frozen=True)
class RuntimeInfo:
    """What a server writes for its kernels: where its broker is and the key to use.

    Attributes:
        url: a loopback URL that reaches the server from this machine, whatever it listens on.
        base_url: the server's base URL path (for the browser's links).
        key: the secret kernels send in :data:`KEY_HEADER`.
        pid: the server's process, to tell a stopped server from one slow to answer.
        cert_sha256: SHA-256 of the server's TLS certificate, which kernels pin (it names the
            server's public host, not the loopback address).
    """

    url: str
    base_url: str
    key: str = field(repr=False)
    pid: int | None = None
    cert_sha256: str | None = None

    @property
    def login_path(self) -> str:
        """Where the sign-in button points, on whatever origin the browser uses."""
        return f"{self.base_url.rstrip('/')}/{LOGIN}"

    @property
    def callback_path(self) -> str:
        """The server's callback, where the widget's paste form sends the browser."""
        return f"{self.base_url.rstrip('/')}/{CALLBACK}"

    def api_url(self, route: str) -> str:
        """The full URL of an API route (``token``, ``refresh`` ...)."""
        return f"{self.url.rstrip('/')}/{API}/{route}"

    def write(self, path: Path) -> None:
        """Write the file, readable by its owner only (it holds the key), whatever the umask."""
        data = {"protocol": VERSION, "url": self.url, "base_url": self.base_url, "key": self.key, "pid": self.pid}
        if self.cert_sha256:
            data["cert_sha256"] = self.cert_sha256
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)

    @classmethod
    def read(cls, path: str | Path) -> RuntimeInfo:
        """Read a runtime file.

        Raises:
            OSError: it cannot be read.
            ValueError: it is not JSON (OtherVersion: it is another version's).
        """
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict) or data.get("protocol") != VERSION or not data.get("url") or not data.get("key"):
            raise OtherVersion("a runtime file of another protocol version")
        pid = data.get("pid")
        return cls(
            url=str(data["url"]),
            base_url=str(data.get("base_url", "/")),
            key=str(data["key"]),
            pid=pid if isinstance(pid, int) else None,
            cert_sha256=str(data["cert_sha256"]) if data.get("cert_sha256") else None,
        )

    def server_alive(self) -> bool:
        """Whether the process that wrote the file still runs (True when it cannot be told)."""
        if not self.pid:
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True  # someone else's process, or no permission to ask: it exists
        return True


@dataclass(frozen=True)
class Snapshot:
    """One reading of the sign-in state, as a kernel caches it.

    ``expires_at`` is on the reading process's wall clock: on the wire the server sends the
    seconds left (``expires_in``), so the two clocks never have to agree.
    """

    version: int
    signed_in: bool
    api_url: str
    sim_api_url: str
    env: str
    api_origins: tuple[str, ...]
    access_token: str | None = field(default=None, repr=False)
    expires_at: float = 0.0
    lifetime: float = 1200.0
    scopes: tuple[str, ...] = ()
    user: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None
    login_pending: bool = False
    configured: bool = True
    # Where the sign-in is kept across restarts, in words (``Memory.kept``).
    kept: str = ""
    # How ts.session retries (the server's settings reach its kernels here).
    max_retries: int = 3
    retry_max_wait: float = 60.0

    @classmethod
    def of(
        cls,
        version: int,
        tokens: TokenSet | None,
        settings: Any,
        error: str | None = None,
        login_pending: bool = False,
        configured: bool = True,
        kept: str = "",
    ) -> Snapshot:
        """The state of a token keeper (``settings`` gives the API URLs and retry limits)."""
        t = tokens
        return cls(
            version=version,
            signed_in=t is not None,
            api_url=settings.api_url,
            sim_api_url=settings.sim_api_url,
            env=settings.env,
            api_origins=tuple(settings.api_origins),
            access_token=t.access_token if t else None,
            expires_at=t.expires_at if t else 0.0,
            lifetime=t.lifetime if t else 1200.0,
            scopes=tuple(t.scopes) if t else (),
            user=dict(t.user) if t else {},
            error=error,
            login_pending=login_pending,
            configured=configured,
            kept=kept,
            max_retries=settings.max_retries,
            retry_max_wait=settings.retry_max_wait,
        )

    def to_wire(self, include_token: bool, now: float | None = None) -> dict[str, Any]:
        """The JSON the server sends; the access token only when asked for."""
        now = time.time() if now is None else now
        data: dict[str, Any] = {
            "version": self.version,
            "signed_in": self.signed_in,
            "login_pending": self.login_pending,
            "error": self.error,
            "api_url": self.api_url,
            "sim_api_url": self.sim_api_url,
            "env": self.env,
            "api_origins": list(self.api_origins),
            "configured": self.configured,
            "kept": self.kept,
            "max_retries": self.max_retries,
            "retry_max_wait": self.retry_max_wait,
        }
        if self.signed_in:
            data.update(
                expires_in=self.expires_at - now, lifetime=self.lifetime, scopes=list(self.scopes), user=dict(self.user)
            )
            if include_token:
                data["access_token"] = self.access_token
        return data

    @classmethod
    def from_wire(cls, data: Mapping[str, Any], now: float | None = None) -> Snapshot:
        """Read what the server sent.

        Raises:
            KeyError, TypeError, ValueError: it is not a snapshot this version understands.
        """
        now = time.time() if now is None else now
        return cls(
            version=int(data["version"]),
            signed_in=bool(data["signed_in"]) and bool(data.get("access_token")),
            api_url=data["api_url"],
            sim_api_url=data["sim_api_url"],
            env=data.get("env", "live"),
            api_origins=tuple(data.get("api_origins", ())),
            access_token=data.get("access_token"),
            expires_at=now + float(data.get("expires_in", 0.0)),
            lifetime=float(data.get("lifetime", 1200.0)),
            scopes=tuple(data.get("scopes", ())),
            user=dict(data.get("user", {})),
            error=data.get("error"),
            login_pending=bool(data.get("login_pending")),
            configured=bool(data.get("configured", True)),
            kept=str(data.get("kept", "")),
            max_retries=int(data.get("max_retries", 3)),
            retry_max_wait=float(data.get("retry_max_wait", 60.0)),
        )

    def fresh(self, now: float | None = None) -> bool:
        """True when the cached access token is good for more than the skew."""
        return self.signed_in and is_fresh(self.expires_at, self.lifetime, now)

    @property
    def display_name(self) -> str:
        """The signed-in user's name, as the id_token gave it."""
        return display_name(self.user)


# -- the hub service and a hub user's servers --------------------------------------------------
# Routes under the service's prefix: GET ``signin?since=V`` long-polls the caller's sign-in,
# POST ``signin`` hands it a claimed login's code, DELETE ``signin`` signs out everywhere, and
# POST ``refresh`` renews a refused access token.
SERVICE_SIGNIN = "api/signin"
SERVICE_REFRESH = "api/refresh"


def handover(pending: Any, code: str) -> dict[str, Any]:
    """What a user's server sends the service for a claimed login (a ``PendingLogin``): the
    callback's code, with the PKCE verifier, nonce, callback URL and scopes it started with."""
    return {
        "code": code,
        "code_verifier": pending.verifier,
        "nonce": pending.nonce,
        "redirect_uri": pending.redirect_uri,
        "scopes": list(pending.scopes),
    }


def service_state(version: int, tokens: TokenSet | None, error: str | None, now: float | None = None) -> dict[str, Any]:
    """A hub user's sign-in as the service sends it to that user's servers: the access side
    only (never the refresh token), with seconds left rather than a time, as kernels get it."""
    now = time.time() if now is None else now
    data: dict[str, Any] = {"version": version, "signed_in": tokens is not None, "error": error}
    if tokens is not None:
        data.update(
            access_token=tokens.access_token,
            expires_in=tokens.expires_at - now,
            lifetime=tokens.lifetime,
            scopes=list(tokens.scopes),
            user=dict(tokens.user),
        )
    return data


def read_service_state(data: Mapping[str, Any], now: float | None = None) -> tuple[int, TokenSet | None, str | None]:
    """(version, tokens without a refresh token, error) from what the service sent.

    Raises:
        KeyError, TypeError, ValueError: not a state this version understands.
    """
    now = time.time() if now is None else now
    version, error = int(data["version"]), data.get("error")
    if error is not None and not isinstance(error, str):
        raise TypeError("error is not text")
    if not data.get("signed_in"):
        return version, None, error
    access, lifetime = data["access_token"], float(data["lifetime"])
    if not isinstance(access, str) or not access or not lifetime > 0:
        raise ValueError("no access token")
    tokens = TokenSet(
        access_token=access,
        expires_at=now + float(data["expires_in"]),
        lifetime=lifetime,
        scopes=tuple(str(s) for s in data.get("scopes", ())),
        user={str(k): str(v) for k, v in dict(data.get("user", {})).items()},
    )
    return version, tokens, error

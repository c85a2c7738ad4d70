"""The kernel protocol, in one place: how a kernel finds its server's broker (the runtime
file and the variable that names it), how it proves itself (the key header), the routes, and
the sign-in state as it travels (:class:`Snapshot`). The hub service's protocol with a hub
user's servers is :mod:`ts_notebook.service_protocol`.

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

from . import tokens as codec
from .config import MAX_RETRIES, RETRY_MAX_WAIT
from .keeper import fresh, renews_at
from .longpoll import LONGPOLL, LONGPOLL_GRACE, LONGPOLL_MAX
from .tokens import DEFAULT_LIFETIME, TokenSet, display_name

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

# The long-poll's timings (LONGPOLL, LONGPOLL_MAX, LONGPOLL_GRACE) are those of every hop:
# see ts_notebook.longpoll.
__all__ = ["LONGPOLL", "LONGPOLL_GRACE", "LONGPOLL_MAX"]  # and everything below


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
    lifetime: float = DEFAULT_LIFETIME
    scopes: tuple[str, ...] = ()
    user: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None
    login_pending: bool = False
    configured: bool = True
    # Where the sign-in is kept across restarts, in words (``Store.kept``).
    kept: str = ""
    # Whether it renews itself (a refresh token is held, here or by the hub service).
    renews: bool = False
    # How ts.session retries (the server's settings reach its kernels here).
    max_retries: int = MAX_RETRIES
    retry_max_wait: float = RETRY_MAX_WAIT

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
        renews: bool = False,
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
            lifetime=t.lifetime if t else DEFAULT_LIFETIME,
            scopes=tuple(t.scopes) if t else (),
            user=dict(t.user) if t else {},
            error=error,
            login_pending=login_pending,
            configured=configured,
            kept=kept,
            renews=renews and t is not None,
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
        if self.tokens is not None:
            data.update(codec.to_json(self.tokens, now, access=include_token))
            # For people (the status bar): the name to show, and when the renewal is due (none
            # is, for a sign-in with no refresh token: it ends when its access token expires).
            data["display_name"] = self.display_name
            if self.renews:
                data["renews_in"] = renews_at(self.expires_at, self.lifetime) - now
        return data

    @property
    def tokens(self) -> TokenSet | None:
        """The access side of the sign-in this reading holds (never a refresh token)."""
        if not self.signed_in or not self.access_token:
            return None
        return TokenSet(
            access_token=self.access_token,
            expires_at=self.expires_at,
            lifetime=self.lifetime,
            scopes=tuple(self.scopes),
            user=dict(self.user),
        )

    @classmethod
    def from_wire(cls, data: Mapping[str, Any], now: float | None = None) -> Snapshot:
        """Read what the server sent.

        Raises:
            KeyError, TypeError, ValueError: it is not a snapshot this version understands.
        """
        now = time.time() if now is None else now
        tokens = codec.from_json(data, now) if data["signed_in"] and data.get("access_token") else None
        return cls(
            version=int(data["version"]),
            signed_in=tokens is not None,
            api_url=data["api_url"],
            sim_api_url=data["sim_api_url"],
            env=data.get("env", "live"),
            api_origins=tuple(data.get("api_origins", ())),
            access_token=tokens.access_token if tokens else None,
            expires_at=tokens.expires_at if tokens else 0.0,
            lifetime=tokens.lifetime if tokens else DEFAULT_LIFETIME,
            scopes=tokens.scopes if tokens else (),
            user=tokens.user if tokens else {},
            error=data.get("error"),
            login_pending=bool(data.get("login_pending")),
            configured=bool(data.get("configured", True)),
            kept=str(data.get("kept", "")),
            max_retries=int(data.get("max_retries", MAX_RETRIES)),
            retry_max_wait=float(data.get("retry_max_wait", RETRY_MAX_WAIT)),
        )

    def fresh(self, now: float | None = None) -> bool:
        """True when the cached access token is good for more than the skew."""
        return self.signed_in and fresh(self.expires_at, self.lifetime, now)

    @property
    def display_name(self) -> str:
        """The signed-in user's name, as the id_token gave it."""
        return display_name(self.user)

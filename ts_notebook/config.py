"""Every ts_notebook setting, in one table, read in one order.

Order: explicit argument > traitlets config (``c.TSNotebook.*``) > environment variable >
default. Nothing here runs at import time; :meth:`Settings.load` reads when called.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError

# (connect, read) seconds for every call to the sign-in service, by every caller (a server, the
# hub service, a process with no server). Generous: token endpoints answering in 20 s have been
# seen, and a code is single use, so a timeout on a slow exchange loses the sign-in.
PROVIDER_TIMEOUT = (5.0, 45.0)
# The longest one sign-in step takes at the provider (a token call, then a JWKS refetch, each
# to its limits): what a caller waiting on another process's step (a kernel on its server's
# renewal, a server on the hub service's exchange) allows, before its own margin.
PROVIDER_STEP = 2 * sum(PROVIDER_TIMEOUT)

# How ts.session retries by default (TS_MAX_RETRIES, TS_RETRY_MAX_WAIT).
MAX_RETRIES = 3
RETRY_MAX_WAIT = 60.0


@dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    name: str
    env: str
    default: str | None
    help: str


TABLE: tuple[Setting, ...] = (
    Setting("client_id", "TS_CLIENT_ID", None, "API key (client id) of your TradeStation application."),
    Setting("client_secret", "TS_CLIENT_SECRET", None, "Its client secret. Leave unset for a PKCE-only key."),
    Setting(
        "client_secret_file",
        "TS_CLIENT_SECRET_FILE",
        None,
        "A file holding the client secret (a mounted secret), instead of TS_CLIENT_SECRET.",
    ),
    Setting(
        "signin_url",
        "TS_SIGNIN_URL",
        "https://signin.tradestation.com",
        "Issuer base URL of the sign-in service (OpenID Connect discovery is read from it).",
    ),
    Setting("audience", "TS_AUDIENCE", "https://api.tradestation.com", "The audience asked for at sign-in."),
    Setting(
        "scopes",
        "TS_SCOPES",
        "openid profile offline_access MarketData ReadAccount",
        "Space-separated scopes to ask for (case sensitive); openid is always added.",
    ),
    Setting(
        "redirect_uri",
        "TS_REDIRECT_URI",
        None,
        "Callback URL registered for your key. Unset: chosen per deployment (see docs/deployments.md).",
    ),
    Setting(
        "hub_public_url",
        "TS_HUB_PUBLIC_URL",
        None,
        "JupyterHub only: the hub's public URL, whose origin starts the one callback URL "
        "(default: JUPYTERHUB_PUBLIC_HUB_URL, else the address the browser used).",
    ),
    Setting(
        "hub_service_url",
        "TS_HUB_SERVICE_URL",
        None,
        "JupyterHub only: the URL of the hub's ts_notebook service (with its /services/NAME/ "
        "prefix). Set: sign-ins are exchanged, kept and renewed there, one per hub user.",
    ),
    Setting(
        "relay_ports",
        "TS_RELAY_PORTS",
        "31022 3000 3001 8080",
        "Ports tried in order for the http://localhost:PORT callback of a key with no "
        "registered URL, when Jupyter is reached on localhost and no redirect URI is set.",
    ),
    Setting("api_url", "TS_API_URL", "https://api.tradestation.com/v3", "Base URL of the live API."),
    Setting(
        "sim_api_url",
        "TS_SIM_API_URL",
        "https://sim-api.tradestation.com/v3",
        "Base URL of the simulator API (ts.sim).",
    ),
    Setting("env", "TS_ENV", "live", "Which API ts.session talks to: live or sim (ts.sim is always the simulator)."),
    Setting(
        "max_retries",
        "TS_MAX_RETRIES",
        str(MAX_RETRIES),
        "How many times ts.session tries a GET (or another idempotent request) again after a 429, "
        "a 502/503/504 or a dropped connection; 0 turns retries off. A POST is never retried.",
    ),
    Setting(
        "retry_max_wait",
        "TS_RETRY_MAX_WAIT",
        f"{RETRY_MAX_WAIT:g}",
        "The longest total wait, in seconds, across the retries of one request.",
    ),
    Setting(
        "token_store",
        "TS_TOKEN_STORE",
        None,
        "Where the sign-in is kept across restarts: keyring (the OS credential store), file (a "
        "0600 file under the Jupyter data directory) or none. Unset: keyring when a secure one "
        "is available, else none.",
    ),
    Setting(
        "audit_log",
        "TS_NOTEBOOK_AUDIT_LOG",
        None,
        "A file the audit trail is appended to (one JSON object a line: sign-ins, renewals, "
        "sign-outs, refusals; never a token). Unset: the ts_notebook.audit logger.",
    ),
)

# Where a sign-in may be kept across restarts (TS_TOKEN_STORE; see ts_notebook.store).
TOKEN_STORES = ("keyring", "file", "none")

# Variables that name or hold the client secret: the server extension removes them from its
# environment so that kernels, which inherit it, never see them.
SECRET_ENV = ("TS_CLIENT_SECRET", "TS_CLIENT_SECRET_FILE")


SCOPE = re.compile(r"[A-Za-z][A-Za-z0-9_:.-]{0,63}")


def parse_scopes(text: str, always: tuple[str, ...] = ("openid",)) -> tuple[str, ...]:
    """Scopes from space- or comma-separated text, ``always`` first, each once.

    Raises:
        ConfigError: a word that is not a scope name.
    """
    words = text.replace(",", " ").split()
    bad = [w for w in words if not SCOPE.fullmatch(w)]
    if bad:
        raise ConfigError(
            f"{bad[0]!r} is not a scope name. Give scopes as words, such as: MarketData ReadAccount Trade"
        )
    return tuple(dict.fromkeys([*always, *words]))


def origin(url: str) -> str:
    """Return ``scheme://host:port`` of ``url``, with the default port made explicit."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{url!r} is not an http(s) URL. Give a full URL such as https://host/path.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}:{port}"


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with :meth:`load`."""

    client_id: str | None
    client_secret: str | None = field(repr=False)
    signin_url: str
    audience: str
    scopes: tuple[str, ...]
    redirect_uri: str | None
    hub_public_url: str | None
    relay_ports: tuple[int, ...]
    api_url: str
    sim_api_url: str
    env: str
    token_store: str | None = None
    hub_service_url: str | None = None
    max_retries: int = MAX_RETRIES
    retry_max_wait: float = RETRY_MAX_WAIT
    audit_log: str | None = None

    @classmethod
    def load(
        cls,
        configurable: Any = None,
        environ: Mapping[str, str] | None = None,
        **explicit: Any,
    ) -> Settings:
        """Resolve every setting: explicit argument > traitlets > environment > default.

        Args:
            configurable: the extension app (``c.TSNotebook.*``); its attributes of the same
                names are read.

        Raises:
            ConfigError: a value is malformed or the secret file cannot be read.
        """
        environ = os.environ if environ is None else environ
        unknown = set(explicit) - {s.name for s in TABLE}
        if unknown:
            raise ConfigError(f"Unknown setting(s) {sorted(unknown)}; known: {[s.name for s in TABLE]}.")
        raw: dict[str, str | None] = {}
        for s in TABLE:
            value = explicit.get(s.name)
            if value is None and configurable is not None:
                value = getattr(configurable, s.name, None)
            if value is None:
                value = environ.get(s.env) or None
            raw[s.name] = s.default if value is None else str(value).strip()
        return cls._from_raw(raw)

    @classmethod
    def _from_raw(cls, raw: dict[str, str | None]) -> Settings:
        secret = raw["client_secret"]
        if secret is None and raw["client_secret_file"]:
            path = Path(raw["client_secret_file"]).expanduser()
            try:
                secret = path.read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                raise ConfigError(
                    f"Cannot read the client secret file {str(path)!r} ({exc.strerror}). "
                    "Fix TS_CLIENT_SECRET_FILE or c.TSNotebook.client_secret_file."
                ) from exc
        env = (raw["env"] or "live").lower()
        if env not in ("live", "sim"):
            raise ConfigError(f"TS_ENV must be 'live' or 'sim', not {raw['env']!r}.")
        try:
            max_retries, retry_max_wait = int(raw["max_retries"] or 0), float(raw["retry_max_wait"] or 0)
        except ValueError:
            max_retries, retry_max_wait = -1, -1.0
        if not (0 <= max_retries <= 100 and 0 <= retry_max_wait <= 3600):
            raise ConfigError(
                "TS_MAX_RETRIES must be a whole number from 0 to 100 and TS_RETRY_MAX_WAIT seconds from 0 to "
                f"3600, not {raw['max_retries']!r} and {raw['retry_max_wait']!r}."
            )
        store = (raw["token_store"] or "").lower() or None
        if store not in (None, *TOKEN_STORES):
            raise ConfigError(f"TS_TOKEN_STORE must be one of {', '.join(TOKEN_STORES)}, not {raw['token_store']!r}.")
        scopes = parse_scopes(raw["scopes"] or "")
        try:
            ports = tuple(int(p) for p in (raw["relay_ports"] or "").replace(",", " ").split())
        except ValueError:
            ports = ()
        if not ports or not all(0 < p < 65536 for p in ports):
            raise ConfigError(
                f"TS_RELAY_PORTS must list port numbers such as '31022 3000', not {raw['relay_ports']!r}."
            )
        for name in ("signin_url", "api_url", "sim_api_url", "redirect_uri", "hub_public_url", "hub_service_url"):
            if raw[name]:
                origin(raw[name])  # validates the URL
        return cls(
            client_id=raw["client_id"],
            client_secret=secret,
            signin_url=raw["signin_url"].rstrip("/"),
            audience=raw["audience"],
            scopes=scopes,
            redirect_uri=raw["redirect_uri"],
            hub_public_url=raw["hub_public_url"],
            relay_ports=ports,
            api_url=raw["api_url"].rstrip("/"),
            sim_api_url=raw["sim_api_url"].rstrip("/"),
            env=env,
            token_store=store,
            hub_service_url=(raw["hub_service_url"].rstrip("/") + "/") if raw["hub_service_url"] else None,
            max_retries=max_retries,
            retry_max_wait=retry_max_wait,
            audit_log=raw["audit_log"] or None,
        )

    def login_scopes(self, asked: str | None) -> tuple[str, ...]:
        """The scopes a sign-in asks for: the setting's, or ``asked`` (``%ts_login --scopes``)
        with openid, and offline_access when the setting has it (so the sign-in renews).

        Raises:
            ConfigError: ``asked`` has a word that is not a scope name.
        """
        if not asked or not asked.strip():
            return self.scopes
        return parse_scopes(asked, always=tuple(s for s in ("openid", "offline_access") if s in self.scopes))

    def require_client_id(self) -> str:
        """Return the client id or say how to set it."""
        if not self.client_id:
            raise ConfigError(
                "No TradeStation API key is set. Set TS_CLIENT_ID (and TS_CLIENT_SECRET) in the "
                "environment that starts Jupyter (or IPython), or c.TSNotebook.client_id in "
                "jupyter_server_config.py."
            )
        return self.client_id

    @cached_property
    def api_origins(self) -> tuple[str, ...]:
        """The only origins that ever receive the bearer token."""
        return tuple(dict.fromkeys([origin(self.api_url), origin(self.sim_api_url)]))

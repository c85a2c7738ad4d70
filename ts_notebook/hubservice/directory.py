"""Who the hub's users are, asked of the hub with the service's own token.

A hub user's name is not who they are: delete ``alice``, let a new person sign up as ``alice``
(OAuthenticator setups reuse e-mail addresses and GitHub logins), and a sign-in kept by name
alone would go to the newcomer. So each kept sign-in is bound to its user's **birth**: the
hub's ``created`` time of that user, which a deleted and re-made user of the same name does not
share. Reading it needs the ``read:users`` scope on the service's token (docs/jupyterhub.md).

An answer asked for a caller is kept :data:`BIRTH_TTL` seconds for that caller's token only: a
token belongs to one user for its whole life (the hub deletes a deleted user's tokens, and the
service's hub client stops taking them within seconds), and a newcomer of the same name calls
with a new token, so is always looked up afresh. Every call has a timeout; a hub that cannot be asked, or a token
without the scope, raises :class:`DirectoryError`, never a guess.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import quote

import requests

from ..errors import TSError

# How long an answer about a caller's user is kept for that caller's token.
BIRTH_TTL = 300.0
# (connect, read) seconds for each call to the hub's API.
HUB_TIMEOUT = (5.0, 20.0)
# The scope the service's token needs (it carries each user's ``created``).
NEEDED = "read:users"


class DirectoryError(TSError):
    """The hub could not say who a user is; the message says what to fix."""


def same_birth(kept: str | None, now: str | None) -> bool:
    """Whether two ``created`` times are one user's. A hub on MySQL keeps whole seconds, and
    rounds a fraction it still shows until it restarts: times within a second are the same."""
    if kept is None or now is None:
        return False
    try:
        a, b = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (kept, now))
        if a.tzinfo is None:
            a = a.replace(tzinfo=timezone.utc)
        if b.tzinfo is None:
            b = b.replace(tzinfo=timezone.utc)
        return abs((a - b).total_seconds()) < 1.0
    except (ValueError, TypeError):
        return kept == now


def cookieless_session() -> requests.Session:
    """A session that never keeps a cookie: the service calls on behalf of every user, and a
    cookie one answer sets must never ride along on another user's call."""
    http = requests.Session()
    http.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return http


class HubDirectory:
    """The hub's users: each one's birth (``created``), or None once the hub has no such user.

    Args:
        api_url: the hub's API (``JUPYTERHUB_API_URL``).
        token: the service's own hub token (``JUPYTERHUB_API_TOKEN``).
    """

    def __init__(self, api_url: str, token: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.api_url = api_url.rstrip("/")
        self.clock = clock
        self._http = cookieless_session()
        self._http.headers["Authorization"] = f"token {token}"
        self._lock = threading.Lock()
        self._births: dict[tuple[str, str], tuple[float, str | None]] = {}
        self._checked = False

    def _get(self, path: str) -> requests.Response:
        try:
            return self._http.get(f"{self.api_url}/{path}", timeout=HUB_TIMEOUT, allow_redirects=False)
        except requests.RequestException as exc:
            raise DirectoryError(f"the hub's API could not be reached ({type(exc).__name__})") from exc

    @staticmethod
    def _model(r: requests.Response) -> dict:
        try:
            model = r.json()
        except ValueError:
            model = None
        if not isinstance(model, dict):
            raise DirectoryError(f"the hub answered {r.status_code} with no JSON object")
        return model

    def check(self, again: bool = False) -> None:
        """Make sure the service's token may read users (asked once, until it may; ``again``:
        ask now, as before a sweep: a token that lost the scope would hear "no such user"
        about everyone).

        Raises:
            DirectoryError: it may not, or the hub could not be asked.
        """
        if self._checked and not again:
            return
        self._checked = False
        r = self._get("user")
        scopes = self._model(r).get("scopes", []) if r.status_code == 200 else []
        if not isinstance(scopes, list) or NEEDED not in scopes:
            raise DirectoryError(
                f"the service's hub token lacks {NEEDED} (hub answered {r.status_code}): give the "
                f'service a role with "scopes": ["{NEEDED}"] (docs/jupyterhub.md)'
            )
        self._checked = True

    def birth(self, name: str, caller: str | None = None) -> str | None:
        """When the hub made user ``name`` (its ``created``), or None if it has no such user.
        Asked for a ``caller`` (the hub token it called with), a recent answer for that token
        is reused; without one, the hub is always asked.

        Raises:
            DirectoryError: the hub could not be asked, or the service may not read users.
        """
        now = self.clock()
        key = self._key(name, caller) if caller else None
        with self._lock:
            for old in [k for k, (at, _) in self._births.items() if now - at >= BIRTH_TTL]:
                del self._births[old]
            kept = self._births.get(key) if key else None
        if kept is not None:
            return kept[1]
        self.check()
        r = self._get(f"users/{quote(name, safe='')}")
        if r.status_code == 404 and self._model(r).get("status") == 404:  # the hub's own answer
            born = None
        elif r.status_code == 200:
            created = self._model(r).get("created")
            born = created if isinstance(created, str) else ""  # (a hub too old to say: the name alone)
        else:  # (a 404 page of a proxy in between, too: never taken for "deleted")
            raise DirectoryError(f"the hub answered {r.status_code} about a user")
        if key:
            with self._lock:
                self._births[key] = (now, born)
        return born

    def knows(self, name: str, caller: str) -> bool:
        """Whether an answer about ``name`` for the token ``caller`` is kept (no call then)."""
        with self._lock:
            kept = self._births.get(self._key(name, caller))
        return kept is not None and self.clock() - kept[0] < BIRTH_TTL

    @staticmethod
    def _key(name: str, caller: str) -> tuple[str, str]:
        """An answer is kept for the name and the token that asked (never the token itself)."""
        return (name, hashlib.sha256(caller.encode()).hexdigest())

"""TokenSet: one sign-in's tokens, their one JSON form, and a repr that shows no secret.

What to do about their expiry (renew when, retry when, fresh until) is the keeper's policy
(:mod:`ts_notebook.keeper`); this module only holds and carries them.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import OAuthError

# The lifetime TradeStation documents, used when a reply's expires_in is missing or absurd.
DEFAULT_LIFETIME = 1200.0
# A longer claimed lifetime is cut to this: the token is renewed at least daily, and no
# timer or clock conversion is ever handed an absurd number (an expires_in of 1e308).
MAX_LIFETIME = 86400.0

# The id_token claims worth keeping about the user; the rest (nonce, iat ...) is protocol.
USER_CLAIMS = ("sub", "name", "nickname", "email", "preferred_username")


@dataclass
class TokenSet:
    """Tokens from one sign-in, kept current by refreshes.

    ``expires_at`` is wall-clock epoch seconds; ``lifetime`` is the ``expires_in`` the provider
    gave, so renewal can be scheduled relative to it.
    """

    access_token: str = field(repr=False)
    expires_at: float
    lifetime: float
    refresh_token: str | None = field(default=None, repr=False)
    id_token: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ()
    user: dict[str, str] = field(default_factory=dict)
    # The scopes the sign-in asked for (``scopes`` is what the provider granted).
    requested: tuple[str, ...] = ()

    @classmethod
    def from_response(
        cls,
        data: Mapping[str, Any],
        *,
        previous: TokenSet | None = None,
        claims: Mapping[str, Any] | None = None,
        now: float | None = None,
        requested: tuple[str, ...] = (),
    ) -> TokenSet:
        """Build from a token endpoint reply.

        A refresh reply carries a new refresh token only when the key rotates them; otherwise
        the previous one stays valid and is kept. Likewise scopes and user carry over.
        """
        now = time.time() if now is None else now
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            raise OAuthError("invalid_response", "the token reply has no access_token")
        try:
            lifetime = float(data.get("expires_in", DEFAULT_LIFETIME))
        except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of 400 digits
            lifetime = DEFAULT_LIFETIME
        if not math.isfinite(lifetime) or lifetime <= 0:
            lifetime = DEFAULT_LIFETIME  # never a renewal loop on a provider's 0 or NaN
        lifetime = min(lifetime, MAX_LIFETIME)
        scope = data.get("scope")
        scopes = tuple(scope.split()) if isinstance(scope, str) else (previous.scopes if previous else ())
        user = {k: str(claims[k]) for k in USER_CLAIMS if claims and k in claims}
        return cls(
            access_token=access,
            expires_at=now + lifetime,
            lifetime=lifetime,
            refresh_token=_text(data.get("refresh_token")) or (previous.refresh_token if previous else None),
            id_token=_text(data.get("id_token")) or (previous.id_token if previous else None),
            scopes=scopes,
            user=user or (dict(previous.user) if previous else {}),
            requested=requested or (previous.requested if previous else ()),
        )

    def seconds_left(self, now: float | None = None) -> float:
        """Seconds until the provider considers the access token expired."""
        return self.expires_at - (time.time() if now is None else now)

    def without_refresh(self) -> TokenSet:
        """These tokens once their refresh token is revoked: the access token lives out its
        time, and nothing renews it."""
        return replace(self, refresh_token=None)

    @property
    def display_name(self) -> str:
        """The best human name the id_token gave."""
        return display_name(self.user)

    def __repr__(self) -> str:
        return (
            f"TokenSet(user={self.display_name!r}, expires_in={self.seconds_left():.0f}s, "
            f"scopes={' '.join(self.scopes)!r}, refresh_token={'yes' if self.refresh_token else 'no'})"
        )


def _text(value: Any) -> str | None:
    # A provider's reply is untrusted: a token that is not a string is no token.
    return value if isinstance(value, str) and value else None


def display_name(user: Mapping[str, str]) -> str:
    """The best human name among the user's id_token claims."""
    return user.get("name") or user.get("nickname") or user.get("email") or user.get("sub") or "unknown user"


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison that takes any text (``compare_digest`` refuses non-ASCII str)."""
    return secrets.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


# -- the one JSON form of a TokenSet -------------------------------------------------------------
# Kept in the store (with the refresh token, and the time as a time), sent to kernels and by the
# hub service to servers (the access side only, with the seconds left: two processes' clocks
# never have to agree). Everything that reads one goes through ``from_json``, so every reader
# refuses the same things.


def to_json(
    tokens: TokenSet, now: float | None = None, *, access: bool = True, refresh: bool = False
) -> dict[str, Any]:
    """``tokens`` as JSON: with ``now``, the expiry as seconds left (``expires_in``), else as
    the time (``expires_at``); the access token unless ``access`` is False, the refresh token
    only when ``refresh`` is True (only the store keeps it)."""
    data: dict[str, Any] = {
        "lifetime": tokens.lifetime,
        "scopes": list(tokens.scopes),
        "requested": list(tokens.requested),
        "user": dict(tokens.user),
    }
    if now is None:
        data["expires_at"] = tokens.expires_at
    else:
        data["expires_in"] = tokens.expires_at - now
    if access:
        data["access_token"] = tokens.access_token
    if refresh:
        data["refresh_token"] = tokens.refresh_token
    return data


def from_json(data: Mapping[str, Any], now: float | None = None, *, refresh: bool = False) -> TokenSet:
    """The TokenSet ``to_json`` wrote (``now``: the reader's clock, for ``expires_in``); with
    ``refresh``, one that must carry a refresh token (a kept sign-in).

    Raises:
        KeyError, TypeError, ValueError: not a token set (damaged, cut short, another version).
    """
    access, refresh_token = data["access_token"], data.get("refresh_token")
    if not isinstance(access, str) or not access:
        raise ValueError("no access token")
    if refresh and (not isinstance(refresh_token, str) or not refresh_token):
        raise ValueError("no refresh token")
    lifetime = float(data["lifetime"])
    if "expires_in" in data:
        expires_at = (time.time() if now is None else now) + float(data["expires_in"])
    else:
        expires_at = float(data["expires_at"])
    if not (math.isfinite(expires_at) and math.isfinite(lifetime) and lifetime > 0):
        raise ValueError("not a time")
    return TokenSet(
        access_token=access,
        expires_at=expires_at,
        lifetime=min(lifetime, MAX_LIFETIME),
        refresh_token=_text(refresh_token),
        scopes=_words(data.get("scopes", ())),
        user={str(k): str(v) for k, v in dict(data.get("user", {})).items()},
        requested=_words(data.get("requested", ())),
    )


def _words(value: Iterable[Any]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError("a list of words, not text")
    return tuple(str(word) for word in value)

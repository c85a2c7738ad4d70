"""TokenSet: one sign-in's tokens, their expiry math and a repr that shows no secret."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import OAuthError

# Treat an access token as expired this many seconds before the provider does, so a request
# sent just before expiry does not arrive just after it.
EXPIRY_SKEW = 30.0

# Renew this long before expiry (a third of the lifetime for short-lived tokens) ...
RENEW_BEFORE = 120.0
# ... and after a renewal fails for a passing reason (network, 5xx), try again after this long.
RETRY_AFTER = 15.0

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

    def renew_in(self, now: float | None = None) -> float:
        """Seconds until this token set should be renewed (at least one: never a tight loop)."""
        return max(1.0, self._until_due(now))

    def due(self, now: float | None = None) -> bool:
        """True once this token set should be renewed."""
        return self._until_due(now) <= 0

    def _until_due(self, now: float | None) -> float:
        return self.seconds_left(now) - min(RENEW_BEFORE, self.lifetime / 3)

    def without_refresh(self) -> TokenSet:
        """These tokens once their refresh token is revoked: the access token lives out its
        time, and nothing renews it."""
        return replace(self, refresh_token=None)

    def retry_in(self, now: float | None = None) -> float:
        """Seconds until a renewal that failed for a passing reason is tried again: within the
        access token's remaining life while it has one, then every RETRY_AFTER for as long as
        the sign-in lasts (the refresh token may still be good, and a rotating one lapses
        after half an hour unused)."""
        left = self.seconds_left(now)
        return min(RETRY_AFTER, left / 2) if left > 1 else RETRY_AFTER

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


def is_fresh(expires_at: float, lifetime: float, now: float | None = None) -> bool:
    """True while an access token is good for more than the skew (scaled down for short
    lifetimes, so a 4-second test token is not stale from birth)."""
    left = expires_at - (time.time() if now is None else now)
    return left > min(EXPIRY_SKEW, lifetime / 4)


def display_name(user: Mapping[str, str]) -> str:
    """The best human name among the user's id_token claims."""
    return user.get("name") or user.get("nickname") or user.get("email") or user.get("sub") or "unknown user"

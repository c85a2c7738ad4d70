"""TokenSet: one sign-in's tokens, their expiry math and a repr that shows no secret."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import OAuthError

# Treat an access token as expired this many seconds before the provider does, so a request
# sent just before expiry does not arrive just after it.
EXPIRY_SKEW = 30.0

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

    @classmethod
    def from_response(
        cls,
        data: Mapping[str, Any],
        *,
        previous: "TokenSet | None" = None,
        claims: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> "TokenSet":
        """Build from a token endpoint reply.

        A refresh reply carries a new refresh token only when the key rotates them; otherwise
        the previous one stays valid and is kept. Likewise scopes and user carry over.
        """
        now = time.time() if now is None else now
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            raise OAuthError("invalid_response", "the token reply has no access_token",
                             "Check TS_SIGNIN_URL points at the sign-in service, then sign in again")
        try:
            lifetime = float(data.get("expires_in", 1200))
        except (TypeError, ValueError):
            lifetime = 1200.0
        scope = data.get("scope")
        scopes = tuple(scope.split()) if isinstance(scope, str) else (previous.scopes if previous else ())
        user = {k: str(claims[k]) for k in USER_CLAIMS if claims and k in claims}
        return cls(
            access_token=access,
            expires_at=now + lifetime,
            lifetime=lifetime,
            refresh_token=data.get("refresh_token") or (previous.refresh_token if previous else None),
            id_token=data.get("id_token") or (previous.id_token if previous else None),
            scopes=scopes,
            user=user or (dict(previous.user) if previous else {}),
        )

    def seconds_left(self, now: float | None = None) -> float:
        """Seconds until the provider considers the access token expired."""
        return self.expires_at - (time.time() if now is None else now)

    def expired(self, now: float | None = None, skew: float = EXPIRY_SKEW) -> bool:
        """True when the access token is expired or within ``skew`` seconds of it."""
        return self.seconds_left(now) <= min(skew, self.lifetime / 4)

    @property
    def display_name(self) -> str:
        """The best human name the id_token gave."""
        u = self.user
        return u.get("name") or u.get("nickname") or u.get("email") or u.get("sub") or "unknown user"

    def to_dict(self) -> dict[str, Any]:
        """Serialise, secrets included: only for a 0600 file or the loopback broker reply."""
        return {
            "access_token": self.access_token,
            "expires_at": self.expires_at,
            "lifetime": self.lifetime,
            "refresh_token": self.refresh_token,
            "id_token": self.id_token,
            "scopes": list(self.scopes),
            "user": dict(self.user),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TokenSet":
        """Inverse of :meth:`to_dict`."""
        return cls(
            access_token=data["access_token"],
            expires_at=float(data["expires_at"]),
            lifetime=float(data["lifetime"]),
            refresh_token=data.get("refresh_token"),
            id_token=data.get("id_token"),
            scopes=tuple(data.get("scopes", ())),
            user=dict(data.get("user", {})),
        )

    def __repr__(self) -> str:
        return (
            f"TokenSet(user={self.display_name!r}, expires_in={self.seconds_left():.0f}s, "
            f"scopes={' '.join(self.scopes)!r}, refresh_token={'yes' if self.refresh_token else 'no'})"
        )

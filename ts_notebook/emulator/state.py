"""The emulated authorization server: clients, codes, tokens and what happened, in memory.

Handlers run on the emulator's loop thread while tests read from theirs, so every piece of
shared state is guarded by one lock and readers get copies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .faults import Faults
from .keys import SigningKey
from .limits import RateLimiter

# Auth0 keeps authorization codes for a minute.
CODE_LIFETIME = 60.0
ID_TOKEN_LIFETIME = 3600
# RFC 7636 section 4.1 / 4.2: what a verifier and an S256 challenge look like.
_VERIFIER_RE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CHALLENGE_RE = re.compile(r"[A-Za-z0-9_-]{43}")


class OAuthError(Exception):
    """An OAuth error reply: ``{"error": error, "error_description": description}``."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class AccessRecord:
    """What an access token stands for."""

    family: str
    username: str
    scope: str
    expires_at: float


@dataclass(frozen=True)
class _RefreshRecord:
    family: str
    username: str
    scope: str


@dataclass(frozen=True)
class _CodeRecord:
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    username: str
    expires_at: float


def token_id(token: str) -> str:
    """A short, stable, non-secret name for ``token`` (first 8 hex digits of its SHA-256)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:8]


def s256(verifier: str) -> str:
    """The S256 PKCE challenge of ``verifier``: base64url of SHA-256, no padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class ProviderState:
    """One client's view of the emulated TradeStation sign-in, plus a record of every call."""

    def __init__(
        self,
        client_id: str,
        client_secret: str | None,
        redirect_uris: list[str],
        access_token_lifetime: float,
        rotate_refresh_tokens: bool,
        signing_key: SigningKey,
    ) -> None:
        self._lock = threading.Lock()
        self.client_id = client_id
        self._client_secret = client_secret
        self._redirect_uris = list(redirect_uris)
        self.access_token_lifetime = access_token_lifetime
        self.rotate_refresh_tokens = rotate_refresh_tokens
        # What revoking a refresh token ends (see ``Emulator.revocation``).
        self.revocation = "token"
        # Whether every reply sets a cookie (see ``Emulator.sets_cookies``).
        self.sets_cookies = False
        self._key = signing_key
        self.issuer = ""
        self._codes: dict[str, _CodeRecord] = {}
        self._access: dict[str, AccessRecord] = {}
        self._refresh: dict[str, _RefreshRecord] = {}
        self._secrets: set[str] = {client_secret} if client_secret else set()
        self.faults = Faults(self._lock)
        self.limiter = RateLimiter()
        self.streams_open = 0  # stream replies being served now (changed on the emulator's loop)
        self.streams_opened = 0
        self._grants: list[dict[str, Any]] = []
        self._api_calls: list[dict[str, Any]] = []
        self._requests: list[dict[str, Any]] = []

    @property
    def public_client(self) -> bool:
        """True when the client has no secret and must use PKCE."""
        return self._client_secret is None

    # -- configuration ---------------------------------------------------------------------

    def add_redirect_uri(self, uri: str) -> None:
        """Register another callback URL."""
        with self._lock:
            if uri not in self._redirect_uris:
                self._redirect_uris.append(uri)

    def jwks(self) -> Any:
        """The JWKS document: only the current signing key, unless a fault overrides it."""
        override = self.faults.settings.jwks_override
        if override is not None:
            return override
        with self._lock:
            return {"keys": [self._key.public_jwk()]}

    def set_signing_key(self, key: SigningKey) -> None:
        """Sign from now on with ``key``; the old key disappears from the JWKS."""
        with self._lock:
            self._key = key

    # -- /authorize ------------------------------------------------------------------------

    def authorize_problem(self, params: Mapping[str, str]) -> str | None:
        """Why Auth0 would refuse these /authorize parameters with an error page, or None."""
        client_id = params.get("client_id")
        if not client_id:
            return "Missing required parameter: client_id"
        if client_id != self.client_id:
            return f"Unknown client: {client_id}"
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri:
            return "Missing required parameter: redirect_uri"
        with self._lock:
            allowed = redirect_uri in self._redirect_uris
        if not allowed:
            return f"Callback URL mismatch. {redirect_uri} is not in the list of allowed callback URLs"
        response_type = params.get("response_type")
        if not response_type:
            return "Missing required parameter: response_type"
        if response_type != "code":
            return f"Unsupported response type: {response_type}"
        challenge = params.get("code_challenge")
        if challenge is None:
            return "Missing required parameter: code_challenge" if self.public_client else None
        if params.get("code_challenge_method") != "S256":
            return "code_challenge_method must be S256"
        if not _CHALLENGE_RE.fullmatch(challenge):
            return "code_challenge must be 43 base64url characters (SHA-256, no padding)"
        return None

    def create_code(self, params: Mapping[str, str], username: str) -> str:
        """A single-use authorization code for validated /authorize ``params``."""
        code = secrets.token_urlsafe(32)
        record = _CodeRecord(
            redirect_uri=params["redirect_uri"],
            scope=params.get("scope", ""),
            nonce=params.get("nonce") or None,
            code_challenge=params.get("code_challenge"),
            username=username,
            expires_at=time.monotonic() + CODE_LIFETIME,
        )
        with self._lock:
            self._codes[code] = record
            self._secrets.add(code)
        return code

    # -- /oauth/token and /oauth/revoke ------------------------------------------------------

    def check_client(self, client_id: str | None, client_secret: str | None) -> None:
        """Authenticate the client like Auth0, raising ``invalid_client`` (401)."""
        if not client_id:
            raise OAuthError("invalid_client", "Missing required parameter: client_id", 401)
        if client_id != self.client_id:
            raise OAuthError("invalid_client", "Unknown client or invalid client credentials", 401)
        if self._client_secret is None:
            if client_secret:
                # A public client's secret is a client bug worth catching: it has none to send.
                raise OAuthError("invalid_client", "This client is public and has no client_secret", 401)
            return
        if not client_secret:
            raise OAuthError("invalid_client", "Client authentication is required (client_secret)", 401)
        if not hmac.compare_digest(client_secret.encode("utf-8"), self._client_secret.encode("utf-8")):
            raise OAuthError("invalid_client", "Unknown client or invalid client credentials", 401)

    def redeem_code(self, params: Mapping[str, str]) -> dict[str, Any]:
        """The token reply for an ``authorization_code`` grant; burns the code either way."""
        code = params.get("code")
        if not code:
            raise OAuthError("invalid_request", "Missing required parameter: code")
        verifier = params.get("code_verifier")
        with self._lock:
            if verifier and _VERIFIER_RE.fullmatch(verifier):
                self._secrets.add(verifier)
            record = self._codes.pop(code, None)
            if record is None or time.monotonic() >= record.expires_at:
                raise OAuthError("invalid_grant", "Invalid authorization code")
            if params.get("redirect_uri") != record.redirect_uri:
                raise OAuthError("invalid_grant", "redirect_uri does not match the one used at /authorize")
            if record.code_challenge is not None:
                if not verifier or not _VERIFIER_RE.fullmatch(verifier):
                    raise OAuthError("invalid_grant", "Failed to verify code verifier")
                if not hmac.compare_digest(s256(verifier), record.code_challenge):
                    raise OAuthError("invalid_grant", "Failed to verify code verifier")
            return self._issue(
                family=secrets.token_hex(8),
                username=record.username,
                scope=record.scope,
                nonce=record.nonce,
                with_refresh="offline_access" in record.scope.split(),
            )

    def refresh(self, params: Mapping[str, str]) -> dict[str, Any]:
        """The token reply for a ``refresh_token`` grant, rotating the token if configured."""
        token = params.get("refresh_token")
        if not token:
            raise OAuthError("invalid_request", "Missing required parameter: refresh_token")
        with self._lock:
            record = self._refresh.get(token)
            if record is None:
                raise OAuthError("invalid_grant", "Unknown or invalid refresh token.")
            rotate = self.rotate_refresh_tokens
            if rotate:
                del self._refresh[token]
            return self._issue(
                family=record.family,
                username=record.username,
                scope=record.scope,
                nonce=None,
                with_refresh=rotate,
            )

    def revoke(self, token: str) -> None:
        """Revoke a refresh token and what ``revocation`` says goes with it; others are ignored."""
        with self._lock:
            record = self._refresh.pop(token, None)
            if record is None:
                return
            if self.revocation == "token":  # that token and the access tokens issued from it
                self._end(lambda user, family: family == record.family)
                return
            # "user" (TradeStation: every refresh token of the key for that user), or "grant"
            # (oidc-provider, Auth0's "revocation deletes grant": the codes not yet exchanged too).
            self._end(lambda user, family: user == record.username)
            if self.revocation == "grant":
                self._codes = {c: r for c, r in self._codes.items() if r.username != record.username}

    def _end(self, ends: Any) -> None:
        # Caller holds the lock: drop every refresh and access token ``ends(user, family)`` names.
        self._refresh = {t: r for t, r in self._refresh.items() if not ends(r.username, r.family)}
        self._access = {t: a for t, a in self._access.items() if not ends(a.username, a.family)}

    def _issue(
        self, *, family: str, username: str, scope: str, nonce: str | None, with_refresh: bool
    ) -> dict[str, Any]:
        # Caller holds the lock.
        faults = self.faults.settings
        lifetime = self.access_token_lifetime
        access = secrets.token_urlsafe(32)
        self._access[access] = AccessRecord(family, username, scope, time.monotonic() + lifetime)
        now = int(time.time() + faults.clock_skew)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": f"auth0|{username}",
            "aud": self.client_id,
            "iat": now,
            "exp": now + ID_TOKEN_LIFETIME,
            "name": username,
            "nickname": username,
            "email": f"{username}@example.com",
        }
        if nonce is not None:
            claims["nonce"] = nonce
        id_token = self._key.sign(claims, with_kid=not faults.sign_without_kid)
        reply: dict[str, Any] = {"access_token": access}
        if with_refresh:
            refresh = secrets.token_urlsafe(32)
            self._refresh[refresh] = _RefreshRecord(family, username, scope)
            self._secrets.add(refresh)
            reply["refresh_token"] = refresh
        expires_in = math.ceil(lifetime) if faults.expires_in_override is None else faults.expires_in_override
        reply.update(id_token=id_token, scope=scope, expires_in=expires_in, token_type="Bearer")
        self._secrets.update((access, id_token))
        return reply

    # -- bearer tokens ---------------------------------------------------------------------

    def access_record(self, token: str) -> AccessRecord | None:
        """What a live access token stands for; None when unknown, revoked or expired."""
        with self._lock:
            record = self._access.get(token)
        if record is None or time.monotonic() >= record.expires_at:
            return None
        return record

    def revoke_access_tokens(self) -> None:
        """Invalidate every access token issued so far."""
        with self._lock:
            self._access.clear()

    def revoke_refresh_tokens(self) -> None:
        """Invalidate every refresh token issued so far."""
        with self._lock:
            self._refresh.clear()

    # -- what happened ---------------------------------------------------------------------

    def record_request(self, method: str, path: str, authorization: bool, cookie: bool = False) -> None:
        """Note one HTTP request (no header values, no query)."""
        with self._lock:
            self._requests.append({"method": method, "path": path, "authorization": authorization, "cookie": cookie})

    def record_grant(self, grant_type: str | None, error: str | None) -> None:
        """Note one /oauth/token call and its outcome."""
        with self._lock:
            self._grants.append({"grant_type": grant_type, "ok": error is None, "error": error, "at": time.time()})

    def record_api_call(
        self,
        path: str,
        status: int,
        token: str | None,
        at: float | None = None,
        reset: float | None = None,
        params: list[str] | None = None,
    ) -> None:
        """Note one API call (``at``: when it arrived; ``reset``: a 429's seconds until the rate
        limit's window frees a call; ``params``: the names of its query's parameters); the token
        is kept only as its :func:`token_id`."""
        record = {"path": path, "status": status, "token_id": token_id(token) if token else None}
        with self._lock:
            self._api_calls.append({**record, "at": at, "reset": reset, "params": params or []})

    def grants(self, with_times: bool = False) -> list[dict[str, Any]]:
        """Copies of the /oauth/token records, oldest first (``at``: wall-clock seconds, if asked)."""
        with self._lock:
            return [dict(g) if with_times else {k: v for k, v in g.items() if k != "at"} for g in self._grants]

    def api_calls(self) -> list[dict[str, Any]]:
        """Copies of the API call records, oldest first."""
        with self._lock:
            return [dict(c) for c in self._api_calls]

    def requests_seen(self) -> list[dict[str, Any]]:
        """Copies of the request records, oldest first."""
        with self._lock:
            return [dict(r) for r in self._requests]

    def issued_secrets(self) -> set[str]:
        """Every secret issued or received so far."""
        with self._lock:
            return set(self._secrets)

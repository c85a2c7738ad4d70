"""OAuth 2.0 / OpenID Connect protocol for TradeStation's sign-in (or any compliant provider).

Pure protocol: discovery, PKCE, state, nonce, the authorize URL, code exchange, refresh,
revoke and id_token verification, over ``requests`` and PyJWT. No Jupyter here. Every call
is blocking and has a timeout; callers on an event loop run these in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from .config import PROVIDER_TIMEOUT, Settings
from .errors import ERROR_CODE, MAX_DESCRIPTION, OAuthError
from .jwks import parse_jwks, pick_key
from .pending import PendingLogin
from .tokens import TokenSet, same_secret

if TYPE_CHECKING:
    import jwt

log = logging.getLogger(__name__)

# Clock difference tolerated when checking id_token times.
ID_TOKEN_LEEWAY = 60
# TradeStation's documented paths, used when discovery cannot be read.
FALLBACK_PATHS = {
    "authorization_endpoint": "/authorize",
    "token_endpoint": "/oauth/token",
    "revocation_endpoint": "/oauth/revoke",
    "jwks_uri": "/.well-known/jwks.json",
}


def callback_params(address: str) -> dict[str, str]:
    """The query of a callback address, as the browser ended on it (pasted, or relayed).

    Raises:
        OAuthError: ``address`` is not a URL.
    """
    try:
        query = urlsplit(address.strip()).query
    except ValueError as exc:
        raise OAuthError("invalid_address", "that is not the address the browser ended on") from exc
    return {k: v[0] for k, v in parse_qs(query).items()}


def callback_code(params: Mapping[str, str]) -> str:
    """The authorization code a callback carries.

    Raises:
        OAuthError: the provider sent an error (``access_denied`` ...) or no code.
    """
    if params.get("error"):
        raise OAuthError(params["error"], params.get("error_description", ""))
    if not params.get("code"):
        raise OAuthError("invalid_request", "the sign-in service sent no code")
    return params["code"]


def as_oauth_error(exc: BaseException) -> OAuthError:
    """``exc`` as the package's error: a reply nobody foresaw becomes ``invalid_response``, so
    a sign-in that meets one ends with a page that says so (never a 500, never a hung wait)."""
    if isinstance(exc, OAuthError):
        return exc
    log.warning("A TradeStation sign-in reply could not be used (%s)", type(exc).__name__)
    return OAuthError("invalid_response", "the sign-in reply could not be used")


def strip_query(url: str) -> str:
    """``url`` without query or fragment: the only form of a URL that may be logged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a malformed URL)"
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def is_loopback_url(url: str) -> bool:
    """True when ``url`` names this machine (localhost, 127.0.0.0/8 or ::1)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def pkce_challenge(verifier: str) -> str:
    """S256 code challenge for ``verifier`` (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class ProviderMetadata:
    """Endpoints of the sign-in service, from discovery or the documented fallback."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str
    jwks_uri: str


def check_metadata(meta: ProviderMetadata, signin_url: str) -> None:
    """Refuse a discovery document that does not belong to the configured sign-in service.

    Its issuer must be the configured one (Auth0's ends in ``/``; either form is accepted),
    and every endpoint must be https unless the issuer is on this machine (the emulator).

    Raises:
        OAuthError: ``invalid_discovery``.
    """
    fields = (meta.issuer, meta.authorization_endpoint, meta.token_endpoint, meta.revocation_endpoint, meta.jwks_uri)
    if not all(isinstance(f, str) and f for f in fields):
        raise OAuthError("invalid_discovery", "the discovery document is malformed")
    if meta.issuer.rstrip("/") != signin_url.rstrip("/"):
        raise OAuthError("invalid_discovery", f"the discovery document names another issuer than {signin_url}")
    schemes = ("http", "https") if is_loopback_url(meta.issuer) else ("https",)
    for endpoint in fields[1:]:
        try:
            scheme, netloc = urlsplit(endpoint).scheme, urlsplit(endpoint).netloc
        except ValueError:
            scheme, netloc = "", ""
        if scheme not in schemes or not netloc:
            raise OAuthError("invalid_discovery", f"{strip_query(endpoint)} is not an https endpoint")


# The fields of a request to the provider that are secret, cut out of any refusal it sends.
SECRET_FIELDS = ("client_secret", "code", "code_verifier", "refresh_token", "token")


def refusal(resp: requests.Response, where: str, sent: Mapping[str, str]) -> OAuthError:
    """A provider's refusal as an :class:`OAuthError`, with nothing of what it was sent in it:
    a provider (or a proxy before it) may quote the request back, secret, code and refresh
    token included, and the message is shown in pages, widgets and notebook outputs."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    fallback = (
        "server_error"
        if resp.status_code >= 500
        else "temporarily_unavailable"
        if resp.status_code == 429
        else "invalid_request"
    )
    error = str(body.get("error") or fallback)
    description = str(body.get("error_description") or f"HTTP {resp.status_code} from {where}")
    for value in (sent.get(name) for name in SECRET_FIELDS):
        if isinstance(value, str) and value:
            error, description = error.replace(value, "[redacted]"), description.replace(value, "[redacted]")
    if not ERROR_CODE.fullmatch(error):
        error, description = fallback, f"an error this client cannot read, from {where}"
    return OAuthError(error, description[:MAX_DESCRIPTION], retry_after=retry_after(resp))


def retry_after(resp: requests.Response) -> float | None:
    """A reply's Retry-After in seconds (its delay-seconds form; at most an hour), if any."""
    value = resp.headers.get("Retry-After", "").strip()
    if not value.isdigit():
        return None
    return min(float(value), 3600.0)


class OAuthClient:
    """The protocol client for one application key.

    Thread-safe: discovery and the JWKS are cached under a lock.
    """

    def __init__(
        self,
        settings: Settings,
        http: requests.Session | None = None,
        timeout: tuple[float, float] = PROVIDER_TIMEOUT,
    ) -> None:
        self.settings = settings
        self.client_id = settings.require_client_id()
        self.http = http or requests.Session()
        self.timeout = timeout
        self._lock = threading.Lock()
        self._metadata: ProviderMetadata | None = None
        self._jwks: list[jwt.PyJWK] = []

    # -- discovery -------------------------------------------------------------------------

    def metadata(self) -> ProviderMetadata:
        """Endpoints from ``{signin_url}/.well-known/openid-configuration``, cached.

        If discovery cannot be read the documented paths are used for this call only, so a
        passing network fault does not pin the fallback.

        Raises:
            OAuthError: ``invalid_discovery`` when the document names another issuer, or
                plain-http endpoints for an issuer that is not on this machine.
        """
        with self._lock:
            if self._metadata is not None:
                return self._metadata
        base = self.settings.signin_url
        url = f"{base}/.well-known/openid-configuration"
        try:
            resp = self.http.get(url, timeout=self.timeout, allow_redirects=False)
            resp.raise_for_status()
            doc = resp.json()
            meta = ProviderMetadata(
                issuer=doc["issuer"],
                authorization_endpoint=doc["authorization_endpoint"],
                token_endpoint=doc["token_endpoint"],
                revocation_endpoint=doc.get("revocation_endpoint") or base + FALLBACK_PATHS["revocation_endpoint"],
                jwks_uri=doc["jwks_uri"],
            )
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            log.warning("OpenID discovery at %s failed (%s); using the documented endpoints", url, type(exc).__name__)
            return ProviderMetadata(issuer=base + "/", **{k: base + p for k, p in FALLBACK_PATHS.items()})
        check_metadata(meta, base)
        with self._lock:
            self._metadata = meta
        return meta

    @property
    def discovered(self) -> bool:
        """True once discovery is cached: :meth:`begin_login` then does no I/O."""
        with self._lock:
            return self._metadata is not None

    # -- the authorization code flow ---------------------------------------------------------

    def begin_login(
        self, redirect_uri: str, state_prefix: str = "", scopes: tuple[str, ...] | None = None
    ) -> PendingLogin:
        """Create state, PKCE verifier and nonce, and the authorize URL that carries them.

        Args:
            redirect_uri: the callback URL, stored and reused byte for byte in the exchange.
            state_prefix: public routing text put before the random part (JupyterHub: which
                named server the callback belongs to).
            scopes: the scopes to ask for (default: the setting's).
        """
        scopes = scopes or self.settings.scopes
        state = state_prefix + secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        nonce = secrets.token_urlsafe(32)
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "audience": self.settings.audience,
            "redirect_uri": redirect_uri,
            "scope": " ".join(scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
        url = f"{self.metadata().authorization_endpoint}?{urlencode(query)}"
        return PendingLogin(
            state=state, verifier=verifier, nonce=nonce, redirect_uri=redirect_uri, authorize_url=url, scopes=scopes
        )

    def exchange(self, pending: PendingLogin, code: str) -> TokenSet:
        """Trade the callback's ``code`` for tokens and verify the id_token against the nonce."""
        data = self._post_token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": pending.redirect_uri,  # byte for byte what authorize got
                "code_verifier": pending.verifier,
            }
        )
        if not isinstance(data.get("id_token"), str) or not data["id_token"]:
            # openid is always asked for, so a reply without an id_token cannot be checked
            # against this login's nonce.
            raise OAuthError("invalid_id_token", "the sign-in reply has no id_token")
        claims = self.verify_id_token(data["id_token"], pending.nonce)
        return TokenSet.from_response(data, claims=claims, requested=pending.scopes)

    def refresh(self, tokens: TokenSet) -> TokenSet:
        """Renew the access token; keeps a rotated refresh token (or the old one if not rotated)."""
        if not tokens.refresh_token:
            raise OAuthError("no_refresh_token", "this sign-in has no refresh token")
        data = self._post_token({"grant_type": "refresh_token", "refresh_token": tokens.refresh_token})
        claims = self.verify_id_token(data["id_token"]) if data.get("id_token") else None
        return TokenSet.from_response(data, previous=tokens, claims=claims)

    def revoke(self, token: str) -> None:
        """Revoke a refresh token at the provider."""
        self._post(self.metadata().revocation_endpoint, self._client_auth({"token": token}))

    # -- id_token ----------------------------------------------------------------------------

    def verify_id_token(self, id_token: str, nonce: str | None = None) -> dict[str, Any]:
        """Verify signature (RS256 via JWKS), iss, aud, exp and, when given, nonce.

        Returns:
            The token's claims.

        Raises:
            OAuthError: ``invalid_id_token`` for any token or JWKS that does not check out.
        """
        import jwt  # PyJWT and cryptography load with the first sign-in, not with ts_notebook

        meta = self.metadata()
        try:
            header = jwt.get_unverified_header(id_token)
            if header.get("alg") != "RS256":
                raise jwt.InvalidAlgorithmError(f"algorithm {header.get('alg')!r} is not RS256")
            kid = header.get("kid")
            key = self._signing_key(kid if isinstance(kid, str) else None, meta.jwks_uri)
            claims = jwt.decode(
                id_token,
                key=key,
                algorithms=["RS256"],
                audience=self.client_id,
                issuer=meta.issuer,
                leeway=ID_TOKEN_LEEWAY,
                # iat must be there but may lie ahead: a provider whose clock runs minutes
                # fast is still the provider (exp, with the leeway, bounds the token's life).
                options={"require": ["exp", "iat", "iss", "aud", "sub"], "verify_iat": False},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise OAuthError("invalid_id_token", str(exc)) from exc
        if nonce is not None and not same_secret(str(claims.get("nonce", "")), nonce):
            raise OAuthError("invalid_id_token", "the nonce does not match this sign-in")
        return claims

    def _signing_key(self, kid: str | None, jwks_uri: str) -> jwt.PyJWK:
        import jwt  # PyJWT and cryptography load with the first sign-in, not with ts_notebook

        with self._lock:
            key = pick_key(self._jwks, kid)
        if key is not None:
            return key
        # Unknown kid: the provider may have rotated keys, so refetch once.
        keys = parse_jwks(self._request("GET", jwks_uri))
        with self._lock:
            self._jwks = keys
            key = pick_key(keys, kid)
        if key is None:
            raise jwt.InvalidKeyError(
                "the id_token is signed with a key the JWKS does not list"
                if kid
                else "the id_token names no key and the JWKS has several"
            )
        return key

    # -- HTTP ----------------------------------------------------------------------------------

    def _client_auth(self, data: dict[str, str]) -> dict[str, str]:
        data = {"client_id": self.client_id, **data}
        if self.settings.client_secret:
            data["client_secret"] = self.settings.client_secret
        return data

    def _post_token(self, data: dict[str, str]) -> dict[str, Any]:
        reply = self._post(self.metadata().token_endpoint, self._client_auth(data))
        if not isinstance(reply, dict) or "access_token" not in reply:
            raise OAuthError("invalid_response", "the token reply has no access_token")
        return reply

    def _post(self, url: str, data: Mapping[str, str]) -> Any:
        resp = self._request("POST", url, data=data)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError as exc:
            raise OAuthError("invalid_response", f"{strip_query(url)} did not answer JSON") from exc

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            resp = self.http.request(method, url, timeout=self.timeout, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise OAuthError("network_error", f"could not reach {strip_query(url)} ({type(exc).__name__})") from exc
        if resp.status_code >= 400:
            raise refusal(resp, strip_query(url), kwargs.get("data") or {})
        return resp

"""The OpenID Connect endpoints of the emulated sign-in (Auth0 flavoured)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import socket
import struct
from typing import Any
from urllib.parse import quote, unquote, urlencode

from .base import BaseHandler
from .faults import CONNECTION_RESET, ConnectionReset, InjectedFailure, TokenOutcome
from .pages import error_page, sign_in_page
from .state import OAuthError

SCOPES_SUPPORTED = [
    "openid",
    "profile",
    "email",
    "offline_access",
    "MarketData",
    "ReadAccount",
    "Trade",
    "OptionSpreads",
    "Matrix",
]


def with_query(url: str, params: dict[str, str]) -> str:
    """``url`` with ``params`` appended, joining with ``&`` if it already has a query."""
    separator = "&" if "?" in url else "?"
    return url + separator + urlencode(params, quote_via=quote)


class DiscoveryHandler(BaseHandler):
    """``GET /.well-known/openid-configuration``."""

    def get(self) -> None:
        base = self.state.issuer.rstrip("/")
        document = {
            "issuer": self.state.issuer,
            "authorization_endpoint": base + "/authorize",
            "token_endpoint": base + "/oauth/token",
            "revocation_endpoint": base + "/oauth/revoke",
            "jwks_uri": base + "/.well-known/jwks.json",
            "userinfo_endpoint": base + "/userinfo",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "none"],
            "scopes_supported": SCOPES_SUPPORTED,
        }
        self.write_json({**document, **self.state.faults.settings.discovery_overrides})


class JwksHandler(BaseHandler):
    """``GET /.well-known/jwks.json``."""

    def get(self) -> None:
        self.write_json(self.state.jwks())


class AuthorizeHandler(BaseHandler):
    """``/authorize``: GET shows the sign-in form, POST acts on Allow or Deny."""

    error_style = "html"

    def get(self) -> None:
        try:
            params = self.query_params()
        except OAuthError as exc:
            self._error(exc.description)
            return
        problem = self.state.authorize_problem(params)
        if problem:
            self._error(problem)
            return
        self._html(sign_in_page(params))

    def post(self) -> None:
        try:
            form = self.body_params()
        except OAuthError as exc:
            self._error(exc.description)
            return
        username = form.pop("username", "").strip()
        decision = form.pop("decision", "")
        problem = self.state.authorize_problem(form)
        if problem:
            self._error(problem)
            return
        state = {"state": form["state"]} if "state" in form else {}
        if decision == "deny":
            self.redirect(
                with_query(
                    form["redirect_uri"],
                    {
                        "error": "access_denied",
                        "error_description": "User did not authorize the request",
                        **state,
                    },
                )
            )
        elif decision != "allow":
            self._html(sign_in_page(form, username, "Choose Allow or Deny."))
        elif not username:
            self._html(sign_in_page(form, "", "Enter a username."))
        else:
            code = self.state.create_code(form, username)
            self.redirect(with_query(form["redirect_uri"], {"code": code, **state}))

    def _html(self, page: str, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(page)

    def _error(self, message: str) -> None:
        self._html(error_page(message), 400)


class TokenHandler(BaseHandler):
    """``POST /oauth/token``: authorization_code and refresh_token grants, plus injected faults."""

    #: Set when an injected fault dropped the connection instead of answering.
    connection_reset = False

    async def post(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("Pragma", "no-cache")
        # The delay and any scripted outcome are fixed on arrival, so "the next N calls" are
        # the next N to arrive even when they finish out of order.
        delay = self.state.faults.settings.token_delay
        grant_type = None
        params: dict[str, str] = {}
        outcome: TokenOutcome | OAuthError | None
        try:
            params = self.body_params()
            grant_type = params.get("grant_type")
            outcome = self.state.faults.token_calls.take(lambda o: getattr(o, "grant_type", None) in (None, grant_type))
        except OAuthError as exc:
            outcome = exc
        if delay > 0:
            # On the emulator's loop: other requests are served while this one waits.
            await asyncio.sleep(delay)
        if isinstance(outcome, ConnectionReset):
            self.state.record_grant(grant_type, CONNECTION_RESET)
            self._reset_connection()
            return
        try:
            if isinstance(outcome, OAuthError):
                raise outcome
            if isinstance(outcome, InjectedFailure):
                if outcome.retry_after is not None:
                    self.set_header("Retry-After", str(outcome.retry_after))
                raise OAuthError(outcome.error, outcome.description, outcome.status)
            reply = self._grant(grant_type, params)
        except OAuthError as exc:
            self.state.record_grant(grant_type, exc.error)
            self.send_oauth_error(exc)
            return
        self.state.record_grant(grant_type, None)
        self.write_json(reply)

    def _grant(self, grant_type: str | None, params: dict[str, str]) -> dict[str, Any]:
        self.state.check_client(*client_credentials(self, params))
        if grant_type == "authorization_code":
            return self.state.redeem_code(params)
        if grant_type == "refresh_token":
            return self.state.refresh(params)
        if not grant_type:
            raise OAuthError("invalid_request", "Missing required parameter: grant_type")
        raise OAuthError("unsupported_grant_type", f"Unsupported grant type: {grant_type}")

    def _reset_connection(self) -> None:
        # SO_LINGER with a zero timeout makes close() send a TCP RST: no HTTP reply at all.
        self.connection_reset = True
        stream = self.request.connection.stream  # type: ignore[union-attr]
        sock = stream.socket
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass  # Already gone: a plain close below is all that is left to do.
        stream.close()
        # Nothing may be written now; finishing only completes tornado's bookkeeping.
        self.finish()


class RevokeHandler(BaseHandler):
    """``POST /oauth/revoke`` (RFC 7009): unknown tokens are fine, bad clients are not."""

    def post(self) -> None:
        try:
            params = self.body_params()
            self.state.check_client(*client_credentials(self, params))
            token = params.get("token")
            if not token:
                raise OAuthError("invalid_request", "Missing required parameter: token")
        except OAuthError as exc:
            self.send_oauth_error(exc)
            return
        self.state.revoke(token)
        self.set_status(200)
        self.finish()


class UserInfoHandler(BaseHandler):
    """``GET /userinfo`` for a bearer access token."""

    def get(self) -> None:
        token = self.bearer_token()
        record = self.state.access_record(token) if token else None
        if record is None:
            self.set_header("WWW-Authenticate", 'Bearer error="invalid_token"')
            self.write_json({"error": "invalid_token", "error_description": "Unauthorized"}, 401)
            return
        self.write_json(
            {
                "sub": f"auth0|{record.username}",
                "name": record.username,
                "nickname": record.username,
                "email": f"{record.username}@example.com",
            }
        )


def client_credentials(handler: BaseHandler, params: dict[str, Any]) -> tuple[str | None, str | None]:
    """The client id and secret from the body or, like Auth0 also accepts, HTTP Basic.

    Raises:
        OAuthError: malformed Basic credentials, or two authentication methods at once.
    """
    scheme, _, value = handler.request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return params.get("client_id"), params.get("client_secret")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise OAuthError("invalid_client", "Malformed Basic credentials", 401) from exc
    client_id, _, secret = (unquote(part) for part in decoded.partition(":"))
    if "client_secret" in params or params.get("client_id", client_id) != client_id:
        raise OAuthError("invalid_request", "Use one client authentication method")
    return client_id, secret

"""Request handling shared by every emulator endpoint: records, parameters, safe errors and logs.

Nothing here may log or echo a token, code, verifier, secret or query string.
"""

from __future__ import annotations

import json
import logging
import secrets
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import orjson
from tornado import web

from .pages import error_page
from .state import OAuthError, ProviderState

logger = logging.getLogger(__name__)


def log_request(handler: web.RequestHandler) -> None:
    """Tornado ``log_function``: method, path (never the query) and status, at DEBUG."""
    if getattr(handler, "connection_reset", False):
        logger.debug("%s %s connection reset", handler.request.method, handler.request.path)
        return
    logger.debug("%s %s %d", handler.request.method, handler.request.path, handler.get_status())


def _single_values(pairs: dict[str, list[str]]) -> dict[str, str]:
    # RFC 6749 section 3.1: parameters must not be repeated.
    repeated = sorted(name for name, values in pairs.items() if len(values) > 1)
    if repeated:
        raise OAuthError("invalid_request", f"Parameter sent more than once: {', '.join(repeated)}")
    return {name: values[0] for name, values in pairs.items()}


class BaseHandler(web.RequestHandler):
    """Records each request and renders errors as short JSON or HTML, never a traceback."""

    #: How unexpected errors are rendered: "oauth" JSON, "api" JSON or "html".
    error_style = "oauth"

    def initialize(self, state: ProviderState) -> None:
        self.state = state

    def prepare(self) -> None:
        headers = self.request.headers
        self.state.record_request(
            self.request.method or "", self.request.path, "Authorization" in headers, "Cookie" in headers
        )
        if self.state.sets_cookies:  # as a load balancer's stickiness cookie (AWSALB) does
            self.set_cookie("AWSALB", secrets.token_hex(8), httponly=True)

    def query_params(self) -> dict[str, str]:
        """The query string as single values; raises ``invalid_request`` if malformed."""
        try:
            pairs = {name: [v.decode("utf-8") for v in values] for name, values in self.request.query_arguments.items()}
        except UnicodeDecodeError as exc:
            raise OAuthError("invalid_request", "The query string is not UTF-8") from exc
        return _single_values(pairs)

    def body_params(self) -> dict[str, str]:
        """A form-encoded or JSON object body as single string values.

        Raises:
            OAuthError: ``invalid_request`` for any other or malformed body.
        """
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        try:
            text = self.request.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise OAuthError("invalid_request", "The request body is not UTF-8") from exc
        if content_type == "application/json":
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise OAuthError("invalid_request", "The request body is not valid JSON") from exc
            if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
                raise OAuthError("invalid_request", "The JSON body must be an object of strings")
            return data
        if content_type == "application/x-www-form-urlencoded":
            return _single_values(parse_qs(text, keep_blank_values=True))
        raise OAuthError("invalid_request", "Send application/x-www-form-urlencoded or application/json")

    def bearer_token(self) -> str | None:
        """The token of an ``Authorization: Bearer`` header, or None."""
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        return token if scheme.lower() == "bearer" and token else None

    def compute_etag(self) -> None:
        return None  # (tornado's ETag hashes every reply: a 20 MB bars reply too; no client here asks)

    def write_json(self, body: Any, status: int = 200) -> None:
        """Finish with ``body`` as JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        try:
            data = orjson.dumps(body)  # (a bars reply of 57,600 bars is 17 MB)
        except TypeError:  # what orjson cannot write (an integer past 64 bits, a hostile reply's)
            data = json.dumps(body).encode()
        self.finish(data)

    def send_oauth_error(self, error: OAuthError) -> None:
        """Finish with an OAuth error reply like Auth0's."""
        if error.status == 401:
            self.set_header("WWW-Authenticate", 'Basic realm="emulator"')
        self.write_json({"error": error.error, "error_description": error.description}, error.status)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Only the status line's reason: exception text might quote a secret.
        reason = self._reason
        if self.error_style == "html":
            self.set_header("Content-Type", "text/html; charset=UTF-8")
            self.finish(error_page(f"{status_code} {reason}"))
        elif self.error_style == "api":
            self.write_json({"Error": reason.replace(" ", ""), "Message": reason}, status_code)
        else:
            error = "server_error" if status_code >= 500 else "invalid_request"
            self.write_json({"error": error, "error_description": reason}, status_code)

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Tornado's version logs the full URI and request headers; keep to method and path.
        if isinstance(value, web.HTTPError):
            return
        logger.error("%s %s failed with %s", self.request.method, self.request.path, typ.__name__ if typ else "?")


class NotFoundHandler(BaseHandler):
    """Any path the emulator does not serve."""

    error_style = "html"

    def prepare(self) -> None:
        super().prepare()
        raise web.HTTPError(404)

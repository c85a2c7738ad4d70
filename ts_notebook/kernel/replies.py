"""What a reply from TradeStation's API means: its error as an :class:`APIError` with what to
do, the rate-limit figures its headers give, and how long a refused request should wait.

Rate limits are only reacted to (a 429), never anticipated: TradeStation asks clients not to
throttle on their own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests

from ..errors import TSError

# The scope each family of endpoints needs (TradeStation's API reference).
SCOPE_OF = (
    ("marketdata/", "MarketData"),
    ("brokerage/", "ReadAccount"),
    ("orderexecution/", "Trade"),
)
RATE_HEADERS = ("Limit", "Remaining", "Reset", "Period", "Resource")


class APIError(TSError, requests.HTTPError):
    """TradeStation's API refused or failed a request (also a ``requests.HTTPError``, so code
    written for requests keeps catching it).

    Attributes:
        status: the HTTP status.
        error: the reply's ``Error`` (``Forbidden``, ``TooManyRequests`` ...), else the reason.
        message: the reply's ``Message``.
        endpoint: the method and path asked for (no query, no host).
        hint: what to do next (the message ends with it).
        response: the reply.
    """

    def __init__(
        self, status: int, error: str, message: str, endpoint: str, hint: str, response: requests.Response | None
    ) -> None:
        self.status, self.error, self.message, self.endpoint, self.hint = status, error, message, endpoint, hint
        text = f"TradeStation API: {status} {error} on {endpoint}"
        if message:
            text += f" ({message})"
        super().__init__(f"{text}. {hint}", response=response)


def endpoint(resp: requests.Response) -> str:
    """``GET marketdata/quotes/MSFT``: the method and the path under the API version."""
    path = urlsplit(resp.request.url or "").path
    for marker in ("/v3/", "/v2/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{resp.request.method} {path.lstrip('/')}"


def rate_limit(headers: Mapping[str, str]) -> dict[str, str]:
    """The ``X-RateLimit-*`` figures a reply gave (each optional), by short name."""
    return {name.lower(): headers[f"X-RateLimit-{name}"] for name in RATE_HEADERS if f"X-RateLimit-{name}" in headers}


def retry_wait(resp: requests.Response, now: float | None = None) -> float | None:
    """Seconds a refused request should wait, as ``Retry-After`` (seconds or a date) or the
    rate-limit reset (seconds, or an epoch time) say; None when neither does."""
    now = time.time() if now is None else now
    value = resp.headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
                when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)  # "-0000": UTC too
                return max(0.0, when.timestamp() - now)
            except (TypeError, ValueError):
                pass
    reset = resp.headers.get("X-RateLimit-Reset")
    if reset:
        try:
            seconds = float(reset)
        except ValueError:
            return None
        return max(0.0, seconds - now if seconds > 1e9 else seconds)
    return None


def missing_scope(path: str, granted: tuple[str, ...]) -> str | None:
    """The scope ``path`` needs that the sign-in was not granted, if one is known."""
    for prefix, scope in SCOPE_OF:
        if path.startswith(prefix) and scope not in granted:
            return scope
    return None


def api_error(resp: requests.Response, granted: tuple[str, ...] = (), attempts: int = 1) -> APIError:
    """The reply as an APIError that says what to do."""
    try:
        body = resp.json()
    except (ValueError, RecursionError):
        body = None
    body = body if isinstance(body, dict) else {}
    status = resp.status_code
    error = str(body.get("Error") or resp.reason or status)
    message = str(body.get("Message") or "")
    where = endpoint(resp)
    tried = f" (tried {attempts} times)" if attempts > 1 else ""
    if status == 401:
        hint = "The API refused the token even after renewing it. Run %ts_login to sign in again"
    elif status == 403:
        scope = missing_scope(where.split(" ", 1)[1], granted)
        hint = (
            f'This sign-in lacks the {scope} scope. Run %ts_login --scopes "{" ".join((*granted, scope))}" '
            f"(or add {scope} to TS_SCOPES), if your API key has it"
            if scope
            else "Your API key or account is not allowed this request; check its permissions with TradeStation"
        )
    elif status == 404:
        hint = f"Check the symbol or account id in {where.split(' ', 1)[1]}"
    elif status == 429:
        figures = rate_limit(resp.headers)
        quota = (
            f"{figures['limit']} requests per {figures.get('period', '?')} s"
            + (f" for {figures['resource']}" if "resource" in figures else "")
            if "limit" in figures
            else "the rate limit"
        )
        wait = retry_wait(resp)
        hint = (
            f"Over {quota}{tried}"
            + (f"; it resets in {wait:.0f} s" if wait is not None and math.isfinite(wait) else "")
            + ". Wait, then try again"
        )
    elif status >= 500:
        hint = f"TradeStation's API is having trouble{tried}. Try again in a minute"
    else:
        hint = "Check the request's parameters against TradeStation's API reference"
    return APIError(status, error, message, where, hint, resp)

"""A tiny subset of TradeStation's v3 API, live (``/v3``) and simulator (``/sim/v3``)."""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from .base import BaseHandler
from .state import AccessRecord


def quote_for(symbol: str) -> dict[str, Any]:
    """A made-up but deterministic quote: the same symbol always gets the same numbers."""
    seed = int.from_bytes(hashlib.sha256(symbol.encode("utf-8")).digest()[:4], "big")
    last = 10 + (seed % 990_000) / 100
    return {
        "Symbol": symbol,
        "Last": f"{last:.2f}",
        "Bid": f"{last - 0.01:.2f}",
        "Ask": f"{last + 0.01:.2f}",
        "Volume": str(seed % 1_000_000),
    }


def accounts_for(username: str, sim: bool) -> dict[str, Any]:
    """Two accounts for ``username``; simulator account ids start with ``SIM``."""
    prefix = "SIM" if sim else ""
    return {
        "Accounts": [
            {
                "AccountID": prefix + "11111111",
                "AccountType": "Margin",
                "Currency": "USD",
                "Status": "Active",
                "Alias": username,
            },
            {
                "AccountID": prefix + "22222222",
                "AccountType": "Cash",
                "Currency": "USD",
                "Status": "Active",
                "Alias": username,
            },
        ]
    }


# The scope each family of routes needs, and the quota it counts against.
SCOPES = (("marketdata/", "MarketData", "quotes"), ("brokerage/", "ReadAccount", "accounts"))


def requirement(route: str) -> tuple[str | None, str]:
    """(the scope ``route`` needs, the resource its rate limit counts)."""
    for prefix, scope, resource in SCOPES:
        if route.startswith(prefix):
            return scope, resource
    return None, "other"


class ApiHandler(BaseHandler):
    """Every request under ``/v3/`` and ``/sim/v3/``; each one is noted in ``api_calls``."""

    error_style = "api"

    async def get(self, sim: str | None, route: str | None) -> None:
        await self._dispatch(sim is not None, route or "")

    async def post(self, sim: str | None, route: str | None) -> None:
        await self._dispatch(sim is not None, None)

    put = patch = delete = post

    async def _dispatch(self, sim: bool, route: str | None) -> None:
        token = self.bearer_token()
        if route == "echo":
            # Open on purpose: it reports whether a bearer header arrived, e.g. after a redirect.
            self._reply(200, {"authorization": "Authorization" in self.request.headers}, token)
            return
        if token is None:
            self._reply(401, {"Error": "Unauthorized", "Message": "Access token is missing"}, None)
            return
        record = self.state.access_record(token)
        if record is None:
            self._reply(401, {"Error": "Unauthorized", "Message": "Access token is invalid or expired"}, token)
            return
        if not await self._admitted(route or "", record, token):
            return
        self._route(sim, route, record, token)

    async def _admitted(self, route: str, record: AccessRecord, token: str) -> bool:
        """Latency, scripted failures, the scope and the rate limit, as the real API applies them."""
        faults = self.state.faults.settings
        if faults.api_delay:
            await asyncio.sleep(faults.api_delay)
        status = self.state.faults.take_api_failure()
        if status is not None:
            reason = HTTPStatus(status).phrase.replace(" ", "")
            self._reply(status, {"Error": reason, "Message": "The emulator was told to fail this request"}, token)
            return False
        scope, resource = requirement(route)
        if scope is not None and scope not in record.scope.split():
            self._reply(403, {"Error": "Forbidden", "Message": f"This request needs the {scope} scope"}, token)
            return False
        if faults.rate_limit is not None:
            limit, period = faults.rate_limit
            allowed, remaining, reset = self.state.limiter.hit((record.username, resource), limit, period, time.time())
            self.set_header("X-RateLimit-Limit", str(limit))
            self.set_header("X-RateLimit-Remaining", str(remaining))
            self.set_header("X-RateLimit-Reset", str(math.ceil(reset)))
            self.set_header("X-RateLimit-Period", f"{period:g}")
            self.set_header("X-RateLimit-Resource", resource)
            if not allowed:
                self.set_header("Retry-After", str(math.ceil(reset)))
                self._reply(429, {"Error": "TooManyRequests", "Message": "Rate limit exceeded"}, token)
                return False
        return True

    def _route(self, sim: bool, route: str | None, record: AccessRecord, token: str) -> None:
        if route == "brokerage/accounts":
            self._reply(200, accounts_for(record.username, sim), token)
        elif route is not None and route.startswith("marketdata/quotes/"):
            symbols = [s.strip() for s in route[len("marketdata/quotes/") :].split(",") if s.strip()]
            if symbols:
                self._reply(200, {"Quotes": [quote_for(s) for s in symbols]}, token)
            else:
                self._reply(400, {"Error": "BadRequest", "Message": "No symbols given"}, token)
        elif route == "redirect":
            self._redirect_to(token)
        else:
            self._reply(404, {"Error": "NotFound", "Message": "No such API route"}, token)

    def _redirect_to(self, token: str) -> None:
        target = self.get_query_argument("to", "")
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.netloc or any(c in target for c in "\r\n"):
            self._reply(400, {"Error": "BadRequest", "Message": "'to' must be an absolute http(s) URL"}, token)
            return
        self.state.record_api_call(self.request.path, 302, token)
        self.redirect(target)

    def _reply(self, status: int, body: Any, token: str | None) -> None:
        # Record before answering so a test that has the reply also sees the record.
        self.state.record_api_call(self.request.path, status, token)
        if status == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="TradeStation emulator"')
        self.write_json(body, status)

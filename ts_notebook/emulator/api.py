"""A tiny subset of TradeStation's v3 API, live (``/v3``) and simulator (``/sim/v3``)."""

from __future__ import annotations

import asyncio
import json
import math
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from . import market, options
from .base import BaseHandler
from .state import AccessRecord

# The scope each family of routes needs, and the quota it counts against.
SCOPES = (
    ("marketdata/", "MarketData", "quotes"),
    ("brokerage/", "ReadAccount", "accounts"),
    ("orderexecution/", "Trade", "orders"),
)


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
        self.arrived = time.time()
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
        cut = self.state.faults.settings.cut_symbols
        if (route or "").startswith("marketdata/barcharts/") and route.rsplit("/", 1)[-1] in cut:
            await self._cut(sim, route or "", record, token)
            return
        self._route(sim, route, record, token)

    async def _cut(self, sim: bool, route: str, record: AccessRecord, token: str) -> None:
        """The reply's headers and half its body, then the connection closed."""
        try:
            data = json.dumps(self._answer(sim, route, record)).encode()
        except market.BadRequest as exc:
            self._reply(400, {"Error": "BadRequest", "Message": str(exc)}, token)
            return
        self.state.record_api_call(self.request.path, 200, token, self.arrived)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Content-Length", str(len(data)))
        self.write(data[: len(data) // 2])
        await self.flush()
        self.request.connection.stream.close()

    async def _admitted(self, route: str, record: AccessRecord, token: str) -> bool:
        """Latency, scripted failures, the scope and the rate limit, as the real API applies them."""
        faults = self.state.faults.settings
        if faults.api_delay:
            await asyncio.sleep(faults.api_delay)
        status = self.state.faults.api_calls.take()
        if status is not None:
            reason = HTTPStatus(status).phrase.replace(" ", "")
            self._reply(status, {"Error": reason, "Message": "The emulator was told to fail this request"}, token)
            return False
        if route.startswith("marketdata/barcharts/") and route.rsplit("/", 1)[-1] in faults.failing_symbols:
            self._reply(503, {"Error": "ServiceUnavailable", "Message": "Bars of this symbol failed"}, token)
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
                self.reset = reset
                self.set_header("Retry-After", str(math.ceil(reset)))
                self._reply(429, {"Error": "TooManyRequests", "Message": "Rate limit exceeded"}, token)
                return False
        return True

    def _route(self, sim: bool, route: str | None, record: AccessRecord, token: str) -> None:
        if route == "redirect":
            self._redirect_to(token)
            return
        try:
            body = self._answer(sim, route or "", record)
        except market.BadRequest as exc:
            self._reply(400, {"Error": "BadRequest", "Message": str(exc)}, token)
            return
        if body is None:
            self._reply(404, {"Error": "NotFound", "Message": "No such API route"}, token)
        else:
            self._reply(200, body, token)

    def _answer(self, sim: bool, route: str, record: AccessRecord) -> dict[str, Any] | None:
        """The reply's body for a GET of ``route`` (None: no such route).

        Raises:
            market.BadRequest: parameters the real API refuses.
        """
        if self.request.method != "GET" and route:
            return None
        now = market.market_now(self.state.faults.settings.market_clock)
        accounts = market.accounts_for(record.username, sim)
        owned = [a["AccountID"] for a in accounts["Accounts"]]
        parts = route.split("/")
        if route == "brokerage/accounts":
            return accounts
        if route.startswith("marketdata/quotes/"):
            return market.quotes([s.strip() for s in route[len("marketdata/quotes/") :].split(",") if s.strip()], now)
        if parts[:2] == ["marketdata", "options"] and len(parts) == 4 and parts[2] in ("expirations", "strikes"):
            return self._options(parts[2], parts[3], now)
        if route.startswith("marketdata/symbols/") and len(parts) == 3:
            return market.symbol_details([s.strip() for s in parts[2].split(",") if s.strip()])
        if route.startswith("marketdata/barcharts/") and len(parts) == 3:
            params = {k: v[-1].decode() for k, v in self.request.query_arguments.items()}
            reply = market.barchart(parts[2], params, now)
            revision = self.state.faults.settings.bar_revision
            if revision:
                reply["Bars"] = [
                    {**bar, "TotalVolume": str(int(bar["TotalVolume"]) + revision)} for bar in reply["Bars"]
                ]
            return reply
        if len(parts) == 4 and parts[:2] == ["brokerage", "accounts"]:
            if parts[3] == "balances":
                return market.balances(parts[2], owned, now)
            if parts[3] == "positions":
                return market.positions(parts[2], owned, now)
            if parts[3] == "orders":
                try:
                    size = int(self.get_query_argument("pageSize", "600"))
                except ValueError as exc:
                    raise market.BadRequest("pageSize must be a whole number") from exc
                return market.orders(parts[2], owned, size, self.get_query_argument("nextToken", None))
        return None

    def _options(self, what: str, underlying: str, now: Any) -> dict[str, Any]:
        """``marketdata/options/expirations/{underlying}`` or ``.../strikes/{underlying}``.

        Raises:
            market.BadRequest: no options for it, or a malformed expiration.
        """
        try:
            if what == "expirations":
                listed = options.expirations(underlying, now.astimezone(market.EXCHANGE).date())
                return {"Expirations": [{"Date": f"{d:%Y-%m-%d}T00:00:00Z", "Type": kind} for d, kind in listed]}
            given = self.get_query_argument("expiration", None)
            if given is not None:
                options.chain(underlying, options.parse_expiration(given), 0, now)  # one that exists
            return {"SpreadType": "Single", "Strikes": [[f"{k:g}"] for k in options.strikes(underlying, now)]}
        except ValueError as exc:  # NoOptions too
            raise market.BadRequest(str(exc)) from exc

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
        self.state.record_api_call(
            self.request.path,
            status,
            token,
            getattr(self, "arrived", None),
            getattr(self, "reset", None),
            sorted(self.request.query_arguments),
        )
        if status == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="TradeStation emulator"')
        self.write_json(body, status)

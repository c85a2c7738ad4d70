"""A tiny subset of TradeStation's v3 API, live (``/v3``) and simulator (``/sim/v3``)."""

from __future__ import annotations

import hashlib
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


class ApiHandler(BaseHandler):
    """Every request under ``/v3/`` and ``/sim/v3/``; each one is noted in ``api_calls``."""

    error_style = "api"

    def get(self, sim: str | None, route: str | None) -> None:
        self._dispatch(sim is not None, route or "")

    def post(self, sim: str | None, route: str | None) -> None:
        self._dispatch(sim is not None, None)

    put = patch = delete = post

    def _dispatch(self, sim: bool, route: str | None) -> None:
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
        self._route(sim, route, record, token)

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

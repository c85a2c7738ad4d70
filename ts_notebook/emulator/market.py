"""The emulator's market and accounts: made-up but deterministic data in TradeStation's v3 shapes.

A value depends only on what it describes (a symbol, a bar's time, an account), never on the
request that asked for it, so overlapping requests agree bar for bar.
"""

from __future__ import annotations

import hashlib
import math
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

EXCHANGE = ZoneInfo("America/New_York")
MAX_INTRADAY_BARS = 57_600
MAX_QUOTE_SYMBOLS = 100
# Minutes of each session template, in exchange time.
SESSIONS = {
    "Default": (time(9, 30), time(16, 0)),
    "USEQ": (time(9, 30), time(16, 0)),
    "USEQPre": (time(4, 0), time(16, 0)),
    "USEQPost": (time(9, 30), time(20, 0)),
    "USEQPreAndPost": (time(4, 0), time(20, 0)),
    "USEQ24Hour": (time(0, 0), time(23, 59, 59)),
}
UNITS = ("Minute", "Daily", "Weekly", "Monthly")


class BadRequest(ValueError):
    """A request the real API answers 400 to; the message is its ``Message``."""


def _unit(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts``."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:6], "big") / 2**48


def known(symbol: str) -> bool:
    """Symbols the emulator knows: letters, digits, dots and spaces, not starting with BAD."""
    return bool(symbol) and not symbol.upper().startswith("BAD") and all(c.isalnum() or c in ". " for c in symbol)


def base_price(symbol: str) -> float:
    return 10 + round(_unit(symbol) * 990_000) / 100


def quote_for(symbol: str) -> dict[str, Any]:
    """A quote whose every field is a string, as the real API's are."""
    last = base_price(symbol)
    volume = int(_unit(symbol, "volume") * 1_000_000)
    return {
        "Symbol": symbol,
        "Last": f"{last:.2f}",
        "Bid": f"{last - 0.01:.2f}",
        "Ask": f"{last + 0.01:.2f}",
        "Open": f"{last * 0.99:.2f}",
        "High": f"{last * 1.01:.2f}",
        "Low": f"{last * 0.98:.2f}",
        "Close": f"{last:.2f}",
        "PreviousClose": f"{last * 0.995:.2f}",
        "Volume": str(volume),
        "NetChange": f"{last * 0.005:.2f}",
        "NetChangePct": "0.5",
        "TradeTime": "2026-11-27T21:00:00Z",
        "MarketFlags": {"IsDelayed": False, "IsHalted": False, "IsBats": False, "IsHardToBorrow": False},
    }


def quotes(symbols: list[str]) -> dict[str, Any]:
    """The quotes reply: known symbols' quotes, and an ``Errors`` entry for each other one."""
    if not symbols or len(symbols) > MAX_QUOTE_SYMBOLS:
        raise BadRequest(f"Give 1 to {MAX_QUOTE_SYMBOLS} symbols")
    return {
        "Quotes": [quote_for(s) for s in symbols if known(s)],
        "Errors": [{"Symbol": s, "Error": "Invalid symbol"} for s in symbols if not known(s)],
    }


def accounts_for(username: str, sim: bool) -> dict[str, Any]:
    """Two accounts for ``username``; simulator account ids start with ``SIM``."""
    prefix = "SIM" if sim else ""
    return {
        "Accounts": [
            {
                "AccountID": f"{prefix}11111111",
                "AccountType": "Margin",
                "Currency": "USD",
                "Status": "Active",
                "Alias": username,
            },
            {
                "AccountID": f"{prefix}22222222",
                "AccountType": "Cash",
                "Currency": "USD",
                "Status": "Active",
                "Alias": username,
            },
        ]
    }


def _accounts(ids: str, owned: list[str], key: str, make: Any) -> dict[str, Any]:
    wanted = [i for i in ids.split(",") if i]
    if not 1 <= len(wanted) <= 25:
        raise BadRequest("Give 1 to 25 account ids")
    rows = [row for i in wanted if i in owned for row in make(i)]
    return {key: rows, "Errors": [{"AccountID": i, "Error": "Account not found"} for i in wanted if i not in owned]}


def balances(ids: str, owned: list[str]) -> dict[str, Any]:
    def make(account: str) -> list[dict[str, Any]]:
        cash = 10_000 + round(_unit(account, "cash") * 90_000, 2)
        return [
            {
                "AccountID": account,
                "AccountType": "Margin",
                "CashBalance": f"{cash:.2f}",
                "Equity": f"{cash * 1.2:.2f}",
                "MarketValue": f"{cash * 0.2:.2f}",
                "TodaysProfitLoss": "12.50",
                "BuyingPower": f"{cash * 2:.2f}",
            }
        ]

    return _accounts(ids, owned, "Balances", make)


def positions(ids: str, owned: list[str]) -> dict[str, Any]:
    def make(account: str) -> list[dict[str, Any]]:
        out = []
        for symbol in ("MSFT", "AAPL", "SPY"):
            qty = 1 + int(_unit(account, symbol) * 200)
            price = base_price(symbol)
            out.append(
                {
                    "AccountID": account,
                    "Symbol": symbol,
                    "Quantity": str(qty),
                    "AveragePrice": f"{price:.2f}",
                    "Last": f"{price * 1.01:.2f}",
                    "MarketValue": f"{qty * price * 1.01:.2f}",
                    "UnrealizedProfitLoss": f"{qty * price * 0.01:.2f}",
                    "LongShort": "Long",
                    "AssetType": "STOCK",
                }
            )
        return out

    return _accounts(ids, owned, "Positions", make)


def orders(ids: str, owned: list[str], page_size: int, next_token: str | None) -> dict[str, Any]:
    """Orders, ``page_size`` at a time; ``NextToken`` names the next page while there is one."""

    def make(account: str) -> list[dict[str, Any]]:
        return [
            {
                "AccountID": account,
                "OrderID": f"{account[-4:]}{n:04d}",
                "Symbol": ("MSFT", "AAPL", "SPY")[n % 3],
                "Status": "FLL",
                "OrderType": "Limit",
                "Quantity": str(10 + n),
                "LimitPrice": f"{100 + n:.2f}",
                "OpenedDateTime": f"2026-11-{1 + n % 27:02d}T15:00:00Z",
            }
            for n in range(23)
        ]

    reply = _accounts(ids, owned, "Orders", make)
    if not 1 <= page_size <= 600:
        raise BadRequest("pageSize must be from 1 to 600")
    start = int(next_token) if next_token and next_token.isdigit() else 0
    rows = reply["Orders"]
    reply["Orders"] = rows[start : start + page_size]
    if start + page_size < len(rows):
        reply["NextToken"] = str(start + page_size)
    return reply


# -- bars ----------------------------------------------------------------------------------------


def _parse_when(text: str, end_of_day: bool) -> datetime:
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day, time(23, 59, 59) if end_of_day else time(0, 0), EXCHANGE)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"{text!r} is not a date (YYYY-MM-DD) or an RFC 3339 time") from exc
    return value if value.tzinfo else value.replace(tzinfo=EXCHANGE)


def _bar_times(
    unit: str, interval: int, session: str, start: datetime | None, end: datetime, count: int | None, limit: int
) -> list[datetime]:
    """Bar times (exchange time), oldest first, ending at or before ``end``: ``count`` of them,
    or all from ``start``. Raises BadRequest past ``limit``."""
    opens, closes = SESSIONS[session]
    out: list[datetime] = []
    day = end.astimezone(EXCHANGE).date()
    while True:
        if day.weekday() < 5:
            stamps: list[datetime] = []
            if unit == "Minute":
                t = datetime.combine(day, opens, EXCHANGE) + timedelta(minutes=interval)
                close = datetime.combine(day, closes, EXCHANGE)
                while t <= close:
                    stamps.append(t)
                    t += timedelta(minutes=interval)
            else:
                last_of_week = unit == "Weekly" and (day.weekday() == 4)
                next_day = day + timedelta(days=1 if day.weekday() < 4 else 3)
                last_of_month = unit == "Monthly" and next_day.month != day.month
                if unit == "Daily" or last_of_week or last_of_month:
                    stamps.append(datetime.combine(day, time(16, 0), EXCHANGE))
            for t in reversed(stamps):
                if t > end:
                    continue
                if start is not None and t < start:
                    return out[::-1]
                out.append(t)
                if count is not None and len(out) == count:
                    return out[::-1]
                if len(out) > limit:
                    raise BadRequest(f"Too many bars: at most {limit} per request")
        day -= timedelta(days=1)
        if day.year < 2000:
            return out[::-1]


def bar_at(symbol: str, unit: str, interval: int, when: datetime) -> dict[str, Any]:
    """The bar of ``symbol`` ending at ``when``: its values depend on nothing else."""
    epoch = int(when.timestamp())
    base = base_price(symbol)
    level = base * (1 + 0.2 * math.sin(epoch / 8_640_000 + _unit(symbol) * 6.28))
    close = level * (1 + (_unit(symbol, unit, interval, epoch) - 0.5) * 0.02)
    open_ = level * (1 + (_unit(symbol, unit, interval, epoch, "o") - 0.5) * 0.02)
    high, low = max(open_, close) * 1.003, min(open_, close) * 0.997
    up = int(_unit(symbol, epoch, "u") * 5_000)
    down = int(_unit(symbol, epoch, "d") * 5_000)
    return {
        "High": f"{high:.2f}",
        "Low": f"{low:.2f}",
        "Open": f"{open_:.2f}",
        "Close": f"{close:.2f}",
        "TimeStamp": when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "TotalVolume": str(up * 37 + down * 29),
        "DownTicks": down,
        "DownVolume": down * 29,
        "OpenInterest": None,
        "IsRealtime": False,
        "IsEndOfHistory": False,
        "TotalTicks": up + down,
        "UpTicks": up,
        "UpVolume": up * 37,
        "Epoch": epoch * 1000,
        "BarStatus": "Closed",
    }


def barchart(symbol: str, params: dict[str, str], now: datetime) -> dict[str, Any]:
    """``GET marketdata/barcharts/{symbol}`` with its parameters, checked as the real API checks them."""
    if not known(symbol):
        raise BadRequest(f"Invalid symbol: {symbol}")
    unit = params.get("unit", "Daily")
    if unit not in UNITS:
        raise BadRequest(f"unit must be one of {', '.join(UNITS)}")
    try:
        interval = int(params.get("interval", "1"))
        count = int(params["barsback"]) if "barsback" in params else None
    except ValueError as exc:
        raise BadRequest("interval and barsback must be whole numbers") from exc
    if unit == "Minute" and not 1 <= interval <= 1440 or unit != "Minute" and interval != 1:
        raise BadRequest("interval must be 1 to 1440 for Minute bars, and 1 otherwise")
    session = params.get("sessiontemplate", "Default")
    if session not in SESSIONS:
        raise BadRequest(f"sessiontemplate must be one of {', '.join(SESSIONS)}")
    limit = MAX_INTRADAY_BARS if unit == "Minute" else 1_000_000
    if count is not None and not 1 <= count <= limit:
        raise BadRequest(f"barsback must be 1 to {limit}")
    if count is not None and "firstdate" in params:
        raise BadRequest("Give barsback or firstdate, not both")
    end = _parse_when(params["lastdate"], end_of_day=True) if "lastdate" in params else now
    start = _parse_when(params["firstdate"], end_of_day=False) if "firstdate" in params else None
    if count is None and start is None:
        count = 1
    times = _bar_times(unit, interval, session, start, end, count, limit)
    return {"Bars": [bar_at(symbol, unit, interval, t) for t in times]}

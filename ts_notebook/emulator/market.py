"""The emulator's market and accounts: made-up but deterministic data in TradeStation's v3 shapes.

Every price is read from one path per symbol (:mod:`.prices`), so a quote, the bars of any unit
and the positions agree at each moment. A closed bar depends only on what it describes (a symbol,
its unit, interval and time), never on the request that asked for it, so overlapping requests
agree bar for bar.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any

from . import prices
from .prices import EXCHANGE, Span, known, rounded, session_close, session_open

MAX_INTRADAY_BARS = 57_600
MAX_QUOTE_SYMBOLS = 100
MAX_DETAIL_SYMBOLS = 50
# Where the emulator's symbols list (the rest, the universe U001 ... included, on the NYSE).
NASDAQ = frozenset(
    [
        "AAPL",
        "ADBE",
        "AMD",
        "AMZN",
        "AVGO",
        "COST",
        "CSCO",
        "GOOGL",
        "INTC",
        "META",
        "MSFT",
        "NFLX",
        "NVDA",
        "PEP",
        "QQQ",
        "TLT",
        "TSLA",
    ]
)
FUNDS = frozenset(["IWM", "QQQ", "SPY", "TLT", "VOO", "XLE", "XLF", "XLK"])
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
ACCOUNT_TYPES = {"11111111": "Margin", "22222222": "Cash"}
HELD = ("MSFT", "AAPL", "SPY")


class BadRequest(ValueError):
    """A request the real API answers 400 to; the message is its ``Message``."""


def market_now(frozen: datetime | None) -> datetime:
    """The market's moment, to the second: ``frozen`` when a test fixed it, else the wall clock."""
    return frozen if frozen is not None else datetime.now(timezone.utc).replace(microsecond=0)


def stamp(when: datetime) -> str:
    """``when`` as the API writes times: UTC, RFC 3339, to the second."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _money(value: float) -> str:
    return f"{value + 0.0:.2f}"  # + 0.0: never "-0.00"


def quote_for(symbol: str, now: datetime) -> dict[str, Any]:
    """The quote of a known ``symbol`` at ``now``, every field a string as the real API's are.

    Open, High, Low, Close and Volume are those of the latest daily bar (today's, once the
    session has opened), PreviousClose the Close of the one before; Last is the path at ``now``
    (after the close too: extended hours), with the bid below it and the ask above.
    """
    today = prices.trading_day(now)
    before = prices.previous_trading_day(today)
    session = prices.span(symbol, session_open(today), min(now, session_close(today)))
    previous = prices.day(symbol, before).volume
    last = rounded(symbol, prices.price(symbol, now))
    previous_close = rounded(symbol, prices.price(symbol, session_close(before)))
    bid, ask, bid_size, ask_size = prices.book(symbol, now)
    change = round(last - previous_close, 2)
    return {
        "Symbol": symbol,
        "Open": _money(rounded(symbol, session.open)),
        "High": _money(rounded(symbol, session.high)),
        "Low": _money(rounded(symbol, session.low)),
        "PreviousClose": _money(previous_close),
        "Last": _money(last),
        "Ask": _money(ask),
        "AskSize": str(ask_size),
        "Bid": _money(bid),
        "BidSize": str(bid_size),
        "NetChange": _money(change),
        "NetChangePct": _money(100 * change / previous_close),
        "Volume": str(session.volume),
        "PreviousVolume": str(previous[prices.DAY] - previous[prices.OPEN]),
        "Close": _money(rounded(symbol, session.close)),
        "TradeTime": stamp(now),
        "MarketFlags": {"IsDelayed": False, "IsHalted": False, "IsBats": False, "IsHardToBorrow": False},
    }


def quotes(symbols: list[str], now: datetime) -> dict[str, Any]:
    """The quotes reply: known symbols' quotes, and an ``Errors`` entry for each other one."""
    if not symbols or len(symbols) > MAX_QUOTE_SYMBOLS:
        raise BadRequest(f"Give 1 to {MAX_QUOTE_SYMBOLS} symbols")
    return {
        "Quotes": [quote_for(s, now) for s in symbols if known(s)],
        "Errors": [{"Symbol": s, "Error": "Invalid symbol"} for s in symbols if not known(s)],
    }


def symbol_details(symbols: list[str]) -> dict[str, Any]:
    """``GET marketdata/symbols/{symbols}``: each known symbol's description, exchange, asset
    type and price and quantity formats (a future's with its point value and expiration), and
    an ``Errors`` entry for each other one."""
    if not symbols or len(symbols) > MAX_DETAIL_SYMBOLS:
        raise BadRequest(f"Give 1 to {MAX_DETAIL_SYMBOLS} symbols")
    details = []
    for symbol in (s for s in symbols if known(s)):
        tick = prices.INSTRUMENTS[symbol].tick
        decimals = str(max(0, -Decimal(str(tick)).as_tuple().exponent))  # type: ignore[operator]
        entry: dict[str, Any] = {
            "AssetType": "STOCK",
            "Country": "United States",
            "Currency": "USD",
            "Description": f"{symbol} {'ETF' if symbol in FUNDS else 'Inc.'} (emulated)",
            "Exchange": "NYSE Arca" if symbol in FUNDS - NASDAQ else "NASDAQ" if symbol in NASDAQ else "NYSE",
            "PriceFormat": {
                "Format": "Decimal",
                "Decimals": decimals,
                "IncrementStyle": "Simple",
                "Increment": f"{tick:g}",
                "PointValue": "1",
            },
            "QuantityFormat": {
                "Format": "Decimal",
                "Decimals": "0",
                "IncrementStyle": "Simple",
                "Increment": "1",
                "MinimumTradeQuantity": "1",
            },
            "Root": symbol,
            "Symbol": symbol,
        }
        if symbol.startswith("ES") and symbol[-2:].isdigit():  # the E-mini S&P 500 future
            entry.update(
                AssetType="FUTURE",
                Description="E-mini S&P 500 (emulated)",
                Exchange="CME",
                ExpirationDate="2026-12-18T00:00:00Z",
                FutureType="Electronic",
                Root="ES",
                Underlying="",
            )
            entry["PriceFormat"]["PointValue"] = "50"
        details.append(entry)
    return {
        "Symbols": details,
        "Errors": [{"Symbol": s, "Message": "Invalid symbol."} for s in symbols if not known(s)],
    }


def accounts_for(username: str, sim: bool) -> dict[str, Any]:
    """Two accounts for ``username``; simulator account ids start with ``SIM``."""
    prefix = "SIM" if sim else ""
    return {
        "Accounts": [
            {
                "AccountID": f"{prefix}{number}",
                "AccountType": kind,
                "Currency": "USD",
                "Status": "Active",
                "Alias": username,
            }
            for number, kind in ACCOUNT_TYPES.items()
        ]
    }


def _accounts(ids: str, owned: list[str], key: str, make: Any) -> dict[str, Any]:
    wanted = [i for i in ids.split(",") if i]
    if not 1 <= len(wanted) <= 25:
        raise BadRequest("Give 1 to 25 account ids")
    rows = [row for i in wanted if i in owned for row in make(i)]
    return {key: rows, "Errors": [{"AccountID": i, "Error": "Account not found"} for i in wanted if i not in owned]}


def _holdings(account: str, now: datetime) -> list[dict[str, Any]]:
    """The account's positions at ``now``, valued at the quotes' prices."""
    out = []
    for symbol in HELD:
        qty = 1 + int(prices.fraction(account, symbol) * 200)
        bought = now - timedelta(days=20 + int(prices.fraction(account, symbol, "bought") * 300))
        average = rounded(symbol, prices.price(symbol, session_close(prices.trading_day(bought))))
        quote = quote_for(symbol, now)
        last, previous_close = float(quote["Last"]), float(quote["PreviousClose"])
        out.append(
            {
                "AccountID": account,
                "Symbol": symbol,
                "Quantity": str(qty),
                "AveragePrice": _money(average),
                "Last": quote["Last"],
                "Bid": quote["Bid"],
                "Ask": quote["Ask"],
                "TotalCost": _money(qty * average),
                "MarketValue": _money(qty * last),
                "TodaysProfitLoss": _money(qty * (last - previous_close)),
                "UnrealizedProfitLoss": _money(qty * (last - average)),
                "UnrealizedProfitLossPercent": _money(100 * (last - average) / average),
                "LongShort": "Long",
                "AssetType": "STOCK",
            }
        )
    return out


def balances(ids: str, owned: list[str], now: datetime) -> dict[str, Any]:
    """Each account's cash, and its positions valued at ``now``."""

    def make(account: str) -> list[dict[str, Any]]:
        cash = 10_000 + round(prices.fraction(account, "cash") * 90_000, 2)
        held = _holdings(account, now)
        value = sum(float(p["MarketValue"]) for p in held)
        today = sum(float(p["TodaysProfitLoss"]) for p in held)
        margin = ACCOUNT_TYPES[account.removeprefix("SIM")] == "Margin"
        return [
            {
                "AccountID": account,
                "AccountType": ACCOUNT_TYPES[account.removeprefix("SIM")],
                "CashBalance": _money(cash),
                "Equity": _money(cash + value),
                "MarketValue": _money(value),
                "TodaysProfitLoss": _money(today),
                "BuyingPower": _money(cash * 2 if margin else cash),
            }
        ]

    return _accounts(ids, owned, "Balances", make)


def positions(ids: str, owned: list[str], now: datetime) -> dict[str, Any]:
    """Each account's positions at ``now``."""
    return _accounts(ids, owned, "Positions", lambda account: _holdings(account, now))


def orders(ids: str, owned: list[str], page_size: int, next_token: str | None) -> dict[str, Any]:
    """Orders, ``page_size`` at a time; ``NextToken`` names the next page while there is one."""

    def make(account: str) -> list[dict[str, Any]]:
        out = []
        for n in range(23):
            symbol, opened = HELD[n % 3], datetime(2026, 11, 1 + n % 27, 15, 0, tzinfo=timezone.utc)
            out.append(
                {
                    "AccountID": account,
                    "OrderID": f"{account[-4:]}{n:04d}",
                    "Symbol": symbol,
                    "Status": "FLL",
                    "OrderType": "Limit",
                    "Quantity": str(10 + n),
                    "LimitPrice": _money(rounded(symbol, prices.price(symbol, opened))),
                    "OpenedDateTime": stamp(opened),
                }
            )
        return out

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


def _start(unit: str, interval: int, end: datetime) -> datetime:
    """When the bar ending at ``end`` begins: its first minute, or its first session's open."""
    if unit == "Minute":
        return end - timedelta(minutes=interval)
    return session_open(_days(unit, end.date())[0])


def _days(unit: str, last: date) -> list[date]:
    """The weekdays of the Daily, Weekly or Monthly bar whose last day is ``last``."""
    first = {"Daily": last, "Weekly": last - timedelta(days=last.weekday())}.get(unit, last.replace(day=1))
    every = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return [d for d in every if d.weekday() < 5]


def _minute_times(
    interval: int, session: str, start: datetime | None, end: datetime, count: int | None, limit: int, now: datetime
) -> list[datetime]:
    """Minute bar times (exchange time), oldest first, ending at or before ``end``, or the bar
    being built at ``now`` when ``end`` is now: ``count`` of them, or all from ``start``. Raises
    BadRequest past ``limit``."""
    out: list[datetime] = []
    day = end.astimezone(EXCHANGE).date()
    while True:
        if day.weekday() < 5:
            for t in _minute_ends(interval, session, day):
                if t > end and not (end == now and _start("Minute", interval, t) < now):
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


@lru_cache(maxsize=1 << 10)  # (four years of weekdays)
def _minute_ends(interval: int, session: str, day: date) -> tuple[datetime, ...]:
    """The times minute bars end on weekday ``day`` (exchange time), newest first."""
    opens, closes = SESSIONS[session]
    stamps: list[datetime] = []
    t = datetime.combine(day, opens, EXCHANGE) + timedelta(minutes=interval)
    close = datetime.combine(day, closes, EXCHANGE)
    while t <= close:
        stamps.append(t)
        t += timedelta(minutes=interval)
    return tuple(reversed(stamps))


@lru_cache(maxsize=4)
def _period_ends(unit: str) -> list[datetime]:
    """Every time a Daily, Weekly or Monthly bar ends (a session's close), from 2000 to 2100,
    oldest first: made once, then a request is two bisections."""
    ends, day = [], date(2000, 1, 1)
    while day.year <= 2100:
        if day.weekday() < 5:
            next_day = day + timedelta(days=1 if day.weekday() < 4 else 3)
            last_of_week = unit == "Weekly" and day.weekday() == 4
            last_of_month = unit == "Monthly" and next_day.month != day.month
            if unit == "Daily" or last_of_week or last_of_month:
                ends.append(session_close(day))
        day += timedelta(days=1)
    return ends


def _period_span(unit: str, start: datetime | None, end: datetime, count: int | None, now: datetime) -> tuple[int, int]:
    """Which of :func:`_period_ends` a request of Daily, Weekly or Monthly bars gets (a slice):
    those ending at or before ``end``, and the one being built at ``now`` when ``end`` is now;
    ``count`` of them, or all from ``start``."""
    ends = _period_ends(unit)
    hi = bisect_right(ends, end)
    if end == now and hi < len(ends) and _start(unit, 1, ends[hi]) < now:
        hi += 1  # the bar being built
    lo = 0 if start is None else bisect_left(ends, start)
    return (max(lo, hi - count) if count is not None else lo), hi


@lru_cache(maxsize=256)  # (a run holds its bars even once _closed_bar has let them go)
def _closed_run(symbol: str, unit: str, lo: int, hi: int) -> tuple[dict[str, Any], ...]:
    """The closed Daily, Weekly or Monthly bars ``lo`` to ``hi`` of :func:`_period_ends`."""
    return tuple(_closed_bar(symbol, unit, 1, t) for t in _period_ends(unit)[lo:hi])


def bar_at(symbol: str, unit: str, interval: int, end: datetime, now: datetime) -> dict[str, Any]:
    """The bar of ``symbol`` ending at ``end`` as it stands at ``now``: a closed bar depends on
    nothing else, and the one being built closes at the price of ``now``."""
    until = min(end, now)
    if unit == "Minute":
        traded = prices.span(symbol, _start(unit, interval, end), until)
    else:
        opened = [d for d in _days(unit, end.date()) if session_open(d) < until]  # not the days to come
        days = [
            prices.session_span(symbol, d)
            if session_close(d) <= until
            else prices.span(symbol, session_open(d), min(session_close(d), until))
            for d in opened
        ]
        traded = Span(
            days[0].open,
            max(d.high for d in days),
            min(d.low for d in days),
            days[-1].close,
            sum(d.volume for d in days),
        )
    open_, high, low, close = (rounded(symbol, v) for v in (traded.open, traded.high, traded.low, traded.close))
    # More of the volume on the upticks in a bar that rose.
    share = 0.5 + (0.3 * (close - open_) / (high - low) if high > low else 0.0)
    ticks = -(-traded.volume // (60 + int(prices.fraction(symbol, "trade size") * 140)))
    up, up_volume = round(ticks * share), round(traded.volume * share)
    building = now < end
    return {
        "High": _money(high),
        "Low": _money(low),
        "Open": _money(open_),
        "Close": _money(close),
        "TimeStamp": stamp(end),
        "TotalVolume": str(traded.volume),
        "DownTicks": ticks - up,
        "DownVolume": traded.volume - up_volume,
        "OpenInterest": None,
        "IsRealtime": building,
        "IsEndOfHistory": False,
        "TotalTicks": ticks,
        "UpTicks": up,
        "UpVolume": up_volume,
        "Epoch": int(end.timestamp()) * 1000,
        "BarStatus": "Open" if building else "Closed",
    }


def barchart(symbol: str, params: dict[str, str], now: datetime) -> dict[str, Any]:
    """``GET marketdata/barcharts/{symbol}`` at ``now``, its parameters checked as the real API
    checks them; the last bar is the one being built while its session is open."""
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
    end = min(_parse_when(params["lastdate"], end_of_day=True), now) if "lastdate" in params else now
    start = _parse_when(params["firstdate"], end_of_day=False) if "firstdate" in params else None
    if count is None and start is None:
        count = 1
    # Closed bars are shared with the next reply: whoever changes one changes a copy.
    if unit == "Minute":
        times = _minute_times(interval, session, start, end, count, limit, now)
        return {
            "Bars": [
                _closed_bar(symbol, unit, interval, t) if t <= now else bar_at(symbol, unit, interval, t, now)
                for t in times
            ]
        }
    lo, hi = _period_span(unit, start, end, count, now)
    ends = _period_ends(unit)
    shut = bisect_right(ends, now, lo, hi)  # the ones ended by now are closed
    return {"Bars": [*_closed_run(symbol, unit, lo, shut), *(bar_at(symbol, unit, 1, t, now) for t in ends[shut:hi])]}


@lru_cache(maxsize=1 << 17)
def _closed_bar(symbol: str, unit: str, interval: int, end: datetime) -> dict[str, Any]:
    """A closed bar, computed once: it depends on nothing else (a remote API's cost per request is
    its latency, not this emulator's arithmetic). Shared: never changed in place."""
    return bar_at(symbol, unit, interval, end, end)

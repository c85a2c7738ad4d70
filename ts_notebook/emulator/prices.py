"""The emulated market's prices: one deterministic path per known symbol, read by every bar,
quote and stream update, so they all agree.

The path at a moment depends only on the symbol and the moment. Each exchange day runs from
the previous day's 16:00 close to its own: the closes are smooth noise on scales from a day to a
year around the symbol's level, and between two closes the path is a random walk pinned to both
(a Brownian bridge), busiest in the regular session. The walk has a point each minute and runs
straight between them, so a quote moves every second while a minute bar ends on a point.
"""

from __future__ import annotations

import hashlib
import math
import random
from array import array
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from itertools import accumulate
from zoneinfo import ZoneInfo

EXCHANGE = ZoneInfo("America/New_York")
DAY = 1440  # minutes from one 16:00 close to the next
OPEN = 1050  # 9:30 as a minute of that day (16:00 is 0 and 1440)
CLOSE_TIME, OPEN_TIME = time(16, 0), time(9, 30)


@dataclass(frozen=True)
class Instrument:
    """What shapes a symbol's path: its level, typical daily move (a fraction), shares (or
    contracts) a regular session trades, and price increment."""

    price: float
    vol: float
    volume: float
    tick: float = 0.01


# US stocks and ETFs at round, recent-looking levels, and one E-mini S&P 500 future.
SYMBOLS: dict[str, Instrument] = {
    "AAPL": Instrument(230, 0.015, 55e6),
    "ABBV": Instrument(180, 0.013, 6e6),
    "ADBE": Instrument(480, 0.020, 3e6),
    "AMD": Instrument(140, 0.030, 45e6),
    "AMZN": Instrument(200, 0.018, 40e6),
    "AVGO": Instrument(220, 0.028, 25e6),
    "BA": Instrument(165, 0.020, 8e6),
    "BAC": Instrument(45, 0.015, 35e6),
    "BRK.B": Instrument(460, 0.009, 4e6),
    "CAT": Instrument(380, 0.016, 3e6),
    "COST": Instrument(900, 0.012, 2e6),
    "CRM": Instrument(320, 0.020, 6e6),
    "CSCO": Instrument(58, 0.012, 18e6),
    "DIA": Instrument(430, 0.008, 3e6),
    "DIS": Instrument(110, 0.015, 9e6),
    "GLD": Instrument(250, 0.009, 8e6),
    "GOOGL": Instrument(175, 0.018, 28e6),
    "GS": Instrument(580, 0.016, 2e6),
    "HD": Instrument(400, 0.013, 3e6),
    "INTC": Instrument(22, 0.025, 60e6),
    "IWM": Instrument(225, 0.012, 30e6),
    "JNJ": Instrument(155, 0.009, 7e6),
    "JPM": Instrument(240, 0.013, 9e6),
    "KO": Instrument(63, 0.008, 13e6),
    "LLY": Instrument(800, 0.020, 3e6),
    "MA": Instrument(520, 0.012, 3e6),
    "META": Instrument(580, 0.022, 14e6),
    "MSFT": Instrument(420, 0.014, 20e6),
    "NFLX": Instrument(850, 0.022, 4e6),
    "NVDA": Instrument(140, 0.030, 250e6),
    "ORCL": Instrument(170, 0.020, 9e6),
    "PEP": Instrument(160, 0.009, 6e6),
    "PFE": Instrument(26, 0.013, 35e6),
    "QQQ": Instrument(520, 0.012, 40e6),
    "SPY": Instrument(600, 0.009, 60e6),
    "TLT": Instrument(90, 0.008, 35e6),
    "TSLA": Instrument(250, 0.035, 95e6),
    "UNH": Instrument(510, 0.015, 4e6),
    "V": Instrument(310, 0.011, 6e6),
    "VOO": Instrument(550, 0.009, 6e6),
    "WMT": Instrument(85, 0.010, 17e6),
    "XLE": Instrument(92, 0.013, 15e6),
    "XLF": Instrument(48, 0.011, 40e6),
    "XLK": Instrument(235, 0.013, 6e6),
    "XOM": Instrument(115, 0.013, 15e6),
    "ESZ26": Instrument(6050, 0.009, 1.5e6, tick=0.25),
}

# (period in days, amplitude in daily moves) of the noise the closes follow: small enough that a
# symbol stays near its level for years, large enough for trends.
SLOW = ((1, 1.0), (5, 1.5), (30, 2.5), (250, 3.5))
# How much the price moves and how much trades in each minute of the day (index m: the minute
# ending m minutes after the last close): most in the regular session, above all at its open
# and close, some in extended hours (16:00 to 20:00, 4:00 to 9:30), little overnight.
_SESSION = [1 + 1.5 * (2 * (m - OPEN) / 390 - 1) ** 2 for m in range(DAY + 1)]
MOTION = [0.0] + [_SESSION[m] if m > OPEN else 0.25 if m <= 240 or m > 720 else 0.1 for m in range(1, DAY + 1)]
TRADING = [0.0] + [_SESSION[m] if m > OPEN else 0.02 if m <= 240 or m > 720 else 0.002 for m in range(1, DAY + 1)]
_VARIANCE = list(accumulate(v * v for v in MOTION))
SHARE = [v / _VARIANCE[-1] for v in _VARIANCE]  # of the day's variance, spent by minute m
PER_MINUTE = 0.8 / math.sqrt(_VARIANCE[-1])  # of a daily move: the bridge's swing at midday


# A universe for downloads of many symbols at once: U001 ... U500, listed stocks whose levels,
# moves and volumes follow from their number (the same every run).
UNIVERSE: dict[str, Instrument] = {
    f"U{n:03d}": Instrument(10 + (n * 37) % 490, 0.008 + (n % 23) / 1000, 1e6 * (1 + n % 50)) for n in range(1, 501)
}
INSTRUMENTS: dict[str, Instrument] = {**SYMBOLS, **UNIVERSE}


def known(symbol: str) -> bool:
    """Whether the emulator quotes ``symbol`` (TradeStation refuses any other)."""
    return symbol in INSTRUMENTS


def rounded(symbol: str, value: float) -> float:
    """``value`` at the symbol's price increment."""
    tick = INSTRUMENTS[symbol].tick
    return round(round(value / tick) * tick, 2)


def fraction(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts``."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:6], "big") / 2**48


@lru_cache(maxsize=65_536)
def _knot(symbol: str, period: int, k: int) -> float:
    return 2 * fraction(symbol, period, k) - 1


def _close(symbol: str, day: int) -> float:
    """The log price at the close of the exchange day with this ordinal."""
    spec, total = INSTRUMENTS[symbol], 0.0
    for period, amplitude in SLOW:
        k, into = divmod(day, period)
        w = into / period
        w = w * w * (3 - 2 * w)
        total += amplitude * ((1 - w) * _knot(symbol, period, k) + w * _knot(symbol, period, k + 1))
    return math.log(spec.price) + spec.vol * total


@dataclass(frozen=True)
class Day:
    """One exchange day of a symbol, minute by minute from the last close (0) to its own (1440):
    the price at each point, the highest and lowest trade in each minute, the volume so far."""

    prices: array
    highs: array
    lows: array
    volume: array


@lru_cache(maxsize=512)
def day(symbol: str, on: date) -> Day:
    """The exchange day that closes at 16:00 on ``on`` (a weekend day too: the path goes on)."""
    spec = INSTRUMENTS[symbol]
    rng = random.Random(f"{symbol}|{on.isoformat()}")
    first, last = _close(symbol, on.toordinal() - 1), _close(symbol, on.toordinal())
    size = spec.vol * PER_MINUTE * math.sqrt(12)  # uniform steps of the right variance
    walk = list(accumulate((rng.random() - 0.5) * size * m for m in MOTION))
    drift = last - first - walk[-1]  # what pins the walk to both closes
    prices = array("d", (math.exp(first + w + drift * s) for w, s in zip(walk, SHARE, strict=True)))
    wick = spec.vol * PER_MINUTE * 0.5
    highs, lows = array("d", [prices[0]]), array("d", [prices[0]])
    for m in range(1, DAY + 1):
        edge = wick * MOTION[m]
        highs.append(max(prices[m - 1], prices[m]) * (1 + edge * rng.random()))
        lows.append(min(prices[m - 1], prices[m]) * (1 - edge * rng.random()))
    level = spec.volume * math.exp(0.5 * (rng.random() - 0.5)) / sum(TRADING[OPEN + 1 :])
    volume = array("q", accumulate(round(level * t * (0.4 + 1.2 * rng.random())) for t in TRADING))
    return Day(prices, highs, lows, volume)


def _place(when: datetime, closing: bool = True) -> tuple[date, int, float]:
    """(the exchange day, its minute point at or before ``when``, the fraction of the next minute
    gone). 16:00 is the end of one day (``closing``) or the start of the next."""
    local = when.astimezone(EXCHANGE)
    minute = local.hour * 60 + local.minute
    into = (local.second + local.microsecond / 1e6) / 60
    if minute < 960 or (closing and minute == 960 and not into):
        return local.date(), minute + 480, into
    return local.date() + timedelta(days=1), minute - 960, into


def price(symbol: str, when: datetime) -> float:
    """The path at ``when`` (unrounded)."""
    on, m, into = _place(when)
    p = day(symbol, on).prices
    return p[m] if not into else p[m] + (p[m + 1] - p[m]) * into


@dataclass(frozen=True)
class Span:
    """What traded between two moments: first and last price, extremes, volume."""

    open: float
    high: float
    low: float
    close: float
    volume: int


def span(symbol: str, start: datetime, end: datetime) -> Span:
    """What traded from ``start`` (on a whole minute) to ``end``; up to the second when ``end``
    is now, so a bar being built agrees with the quote."""
    first, high, low, volume = price(symbol, start), -math.inf, math.inf, 0
    at = start
    while at < end:
        on, m, _ = _place(at, closing=False)
        d = day(symbol, on)
        stop, until, into = _place(end)
        if stop != on:  # the span goes on past this day's close
            until, into = DAY, 0.0
        if until > m:
            high, low = max(high, max(d.highs[m + 1 : until + 1])), min(low, min(d.lows[m + 1 : until + 1]))
            volume += d.volume[until] - d.volume[m]
        if into:  # a minute not yet over: its trades so far
            now = d.prices[until] + (d.prices[until + 1] - d.prices[until]) * into
            high, low = max(high, d.prices[until], now), min(low, d.prices[until], now)
            volume += int((d.volume[until + 1] - d.volume[until]) * into)
        at = datetime.combine(on, CLOSE_TIME, EXCHANGE)
    close = price(symbol, end)
    return Span(first, max(high, first, close), min(low, first, close), close, volume)


@lru_cache(maxsize=1 << 18)
def session_span(symbol: str, on: date) -> Span:
    """What traded in the regular session of ``on``, once it has closed: kept, as a day of
    daily bars asks for it again and again (a year of one symbol's daily bars is 252 of them)."""
    return span(symbol, session_open(on), session_close(on))


def book(symbol: str, when: datetime) -> tuple[float, float, int, int]:
    """(bid, ask, bid size, ask size) around the path at ``when``: one or more increments
    either side, wider for dearer symbols, changing every second."""
    spec, last = INSTRUMENTS[symbol], rounded(symbol, price(symbol, when))
    widest = 1 + int(last * 0.00002 / spec.tick)
    stamp = int(when.timestamp())
    below = 1 + int(fraction(symbol, stamp, "bid") * widest)
    above = 1 + int(fraction(symbol, stamp, "ask") * widest)
    sizes = (100 * (1 + int(fraction(symbol, stamp, side) * 30)) for side in ("bid size", "ask size"))
    return rounded(symbol, last - below * spec.tick), rounded(symbol, last + above * spec.tick), *sizes


def session_open(on: date) -> datetime:
    """9:30 in New York on ``on``."""
    return datetime.combine(on, OPEN_TIME, EXCHANGE)


def session_close(on: date) -> datetime:
    """16:00 in New York on ``on``."""
    return datetime.combine(on, CLOSE_TIME, EXCHANGE)


def trading_day(when: datetime) -> date:
    """The latest weekday whose regular session had opened before ``when``."""
    on = when.astimezone(EXCHANGE).date()
    while on.weekday() >= 5 or session_open(on) >= when:
        on -= timedelta(days=1)
    return on


def previous_trading_day(on: date) -> date:
    """The weekday before ``on``."""
    on -= timedelta(days=1)
    while on.weekday() >= 5:
        on -= timedelta(days=1)
    return on

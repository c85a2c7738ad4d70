"""The emulator's options: expirations, strikes and a chain for each listed stock and ETF.

Expirations are the next four Fridays (weekly) and the third Fridays of the next three months
past them (monthly). Strikes sit around the underlying's price at a step that suits its level.
Each option is priced with Black-Scholes at a volatility from the underlying's own typical move
(with a smile), and carries the greeks and the figures TradeStation's chain stream sends; what
depends on chance (volume, open interest) is fixed by the contract, so a chain is the same
whenever it is asked for at the same moment.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Any

from . import prices
from .prices import EXCHANGE, known

RATE = 0.04  # the risk-free rate the chain is priced at
TRADING_DAYS = 252
STRIKES_EACH_SIDE = 10  # strikes listed on each side of the money


class NoOptions(ValueError):
    """The symbol has no options here (a future, or one the emulator does not know)."""


def _third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def expirations(underlying: str, today: date) -> list[tuple[date, str]]:
    """(date, "Weekly" or "Monthly") for ``underlying``, soonest first.

    Raises:
        NoOptions: it has none here.
    """
    _check(underlying)
    fridays = [today + timedelta(days=(4 - today.weekday()) % 7 + 7 * k) for k in range(4)]
    found = {d: "Weekly" for d in fridays}
    year, month = today.year, today.month
    while len([d for d, kind in found.items() if kind == "Monthly" and d > fridays[-1]]) < 3:
        third = _third_friday(year, month)
        if third >= today:
            found[third] = "Monthly"
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return sorted(found.items())


def step_for(level: float) -> float:
    """The distance between strikes for an underlying at ``level``."""
    return 1.0 if level < 50 else 2.5 if level < 200 else 5.0 if level < 600 else 10.0


def strikes(underlying: str, now: datetime) -> list[float]:
    """The strikes listed around the underlying's price at ``now``."""
    _check(underlying)
    level = prices.price(underlying, now)
    step = step_for(level)
    middle = round(level / step) * step
    return [middle + step * k for k in range(-STRIKES_EACH_SIDE, STRIKES_EACH_SIDE + 1) if middle + step * k > 0]


def parse_expiration(text: str) -> date:
    """An expiration as the API takes it: ``YYYY-MM-DD`` or ``MM-DD-YYYY`` (a time after it is
    ignored).

    Raises:
        ValueError: anything else.
    """
    day = text.strip()[:10]
    for layout in ("%Y-%m-%d", "%m-%d-%Y"):
        try:
            return datetime.strptime(day, layout).date()
        except ValueError:
            continue
    raise ValueError(f"expiration must be YYYY-MM-DD or MM-DD-YYYY, not {text!r}")


def _check(underlying: str) -> None:
    if not known(underlying) or not prices.INSTRUMENTS[underlying].tick == 0.01:
        raise NoOptions(f"No options for {underlying}")


def _norm_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _norm_pdf(x: float) -> float:
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def quote(underlying: str, expiration: date, strike: float, side: str, now: datetime) -> dict[str, Any]:
    """One option of the chain as the chain stream sends it (numbers as text)."""
    spot = prices.price(underlying, now)
    expires = datetime.combine(expiration, datetime.min.time(), EXCHANGE).replace(hour=16)
    t = max((expires - now).total_seconds() / (365 * 86400), 1 / (365 * 24))
    base = prices.INSTRUMENTS[underlying].vol * math.sqrt(TRADING_DAYS)
    sigma = base * (1 + 0.8 * math.log(strike / spot) ** 2 + (0.1 if strike < spot else 0.0))  # a smile, a skew
    d1 = (math.log(spot / strike) + (RATE + sigma * sigma / 2) * t) / (sigma * math.sqrt(t))
    d2 = d1 - sigma * math.sqrt(t)
    discount = math.exp(-RATE * t)
    call = side == "Call"
    if call:
        value = spot * _norm_cdf(d1) - strike * discount * _norm_cdf(d2)
        delta, rho = _norm_cdf(d1), strike * t * discount * _norm_cdf(d2) / 100
        itm = _norm_cdf(d2)
    else:
        value = strike * discount * _norm_cdf(-d2) - spot * _norm_cdf(-d1)
        delta, rho = _norm_cdf(d1) - 1, -strike * t * discount * _norm_cdf(-d2) / 100
        itm = _norm_cdf(-d2)
    gamma = _norm_pdf(d1) / (spot * sigma * math.sqrt(t))
    vega = spot * _norm_pdf(d1) * math.sqrt(t) / 100
    theta = (
        -spot * _norm_pdf(d1) * sigma / (2 * math.sqrt(t))
        - (1 if call else -1) * RATE * strike * discount * _norm_cdf(d2 if call else -d2)
    ) / 365
    intrinsic = max(0.0, spot - strike) if call else max(0.0, strike - spot)
    half = max(0.01, round(0.02 * value, 2))
    bid, ask = max(0.0, round(value - half, 2)), round(value + half, 2)
    code = f"{expiration:%y%m%d}{'C' if call else 'P'}{strike:g}"
    symbol = f"{underlying} {code}"
    liquid = math.exp(-4 * abs(math.log(strike / spot)))
    volume = int(2000 * liquid * prices.fraction(symbol, now.date(), "volume"))
    interest = int(20000 * liquid * (0.2 + prices.fraction(symbol, "open interest")))
    last = round(value * (0.98 + 0.04 * prices.fraction(symbol, now.date(), "last")), 2)
    text = f"{strike:g}"
    return {
        "Delta": f"{delta:.4f}",
        "Theta": f"{theta:.4f}",
        "Gamma": f"{gamma:.4f}",
        "Rho": f"{rho:.4f}",
        "Vega": f"{vega:.4f}",
        "ImpliedVolatility": f"{sigma:.4f}",
        "IntrinsicValue": f"{intrinsic:.2f}",
        "ExtrinsicValue": f"{max(0.0, value - intrinsic):.2f}",
        "TheoreticalValue": f"{value:.2f}",
        "ProbabilityITM": f"{itm:.4f}",
        "ProbabilityOTM": f"{1 - itm:.4f}",
        "StandardDeviation": f"{spot * sigma * math.sqrt(t):.2f}",
        "DailyOpenInterest": interest,
        "Ask": f"{ask:.2f}",
        "Bid": f"{bid:.2f}",
        "Mid": f"{(bid + ask) / 2:.3f}",
        "AskSize": 10 + int(90 * prices.fraction(symbol, "ask size")),
        "BidSize": 10 + int(90 * prices.fraction(symbol, "bid size")),
        "Last": f"{last:.2f}",
        "Volume": volume,
        "Side": side,
        "Strikes": [text],
        "Legs": [
            {
                "Symbol": symbol,
                "Ratio": 1,
                "StrikePrice": text,
                "Expiration": f"{expiration:%Y-%m-%d}T00:00:00Z",
                "OptionType": side,
            }
        ],
    }


def chain(underlying: str, expiration: date, proximity: int | None, now: datetime) -> list[dict[str, Any]]:
    """Calls and puts of ``expiration`` at ``proximity`` strikes either side of the money (None:
    every strike listed), strike by strike.

    Raises:
        NoOptions: none for ``underlying``, or none expire then.
    """
    if expiration not in {d for d, _ in expirations(underlying, now.astimezone(EXCHANGE).date())}:
        raise NoOptions(f"No {underlying} options expire on {expiration:%Y-%m-%d}")
    listed = strikes(underlying, now)
    if proximity is not None:
        middle = min(range(len(listed)), key=lambda i: abs(listed[i] - prices.price(underlying, now)))
        listed = listed[max(0, middle - proximity) : middle + proximity + 1]
    return [quote(underlying, expiration, k, side, now) for k in listed for side in ("Call", "Put")]

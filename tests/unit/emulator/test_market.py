"""The emulated market over real HTTP: quotes, bars of every unit and both streams read one price
path per symbol, so they agree at every moment; only known symbols are quoted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests

from ts_notebook.emulator import Emulator
from ts_notebook.emulator.prices import EXCHANGE, SYMBOLS

from .test_app import api, sign_in

# A Wednesday in New York: before the open, in the session, after the close.
PRE_MARKET = datetime(2026, 12, 2, 8, 15, tzinfo=EXCHANGE)
IN_SESSION = datetime(2026, 12, 2, 11, 47, 23, tzinfo=EXCHANGE)
AFTER_CLOSE = datetime(2026, 12, 2, 18, 5, 9, tzinfo=EXCHANGE)
SATURDAY = datetime(2026, 12, 5, 12, 0, tzinfo=EXCHANGE)


@pytest.fixture
def market() -> Iterator[tuple[Emulator, str]]:
    with Emulator(client_id="market-client") as em:
        em.configure_streams(interval=0.01, heartbeat=5.0)
        yield em, sign_in(em)["access_token"]


def quote(em: Emulator, token: str, symbol: str, at: datetime | None = None) -> dict[str, Any]:
    if at is not None:
        em.market_clock = at
    body = api(em, f"/v3/marketdata/quotes/{symbol}", token).json()
    assert body["Errors"] == [], body
    return body["Quotes"][0]


def bars(em: Emulator, token: str, symbol: str, **params: Any) -> list[dict[str, Any]]:
    resp = api(em, f"/v3/marketdata/barcharts/{symbol}", token, params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()["Bars"]


def stream(em: Emulator, token: str, path: str, count: int, **params: Any) -> list[dict[str, Any]]:
    """The first ``count`` objects a stream sends, heartbeats and markers included."""
    headers = {"Authorization": f"Bearer {token}"}
    out: list[dict[str, Any]] = []
    with requests.get(em.url + "/v3/" + path, headers=headers, params=params, stream=True, timeout=10) as resp:
        for line in resp.iter_lines():
            if line:
                out.append(json.loads(line))
            if len(out) == count:
                break
    return out


@pytest.mark.parametrize(
    ("at", "day"),
    [(PRE_MARKET, "2026-12-01"), (IN_SESSION, "2026-12-02"), (AFTER_CLOSE, "2026-12-02"), (SATURDAY, "2026-12-04")],
    ids=["pre", "in", "after", "weekend"],
)
def test_the_quote_is_the_latest_daily_bar_and_the_one_before(market, at, day):
    em, token = market
    q = quote(em, token, "MSFT", at)
    *_, yesterday, today = bars(em, token, "MSFT", barsback=2)

    assert [q[k] for k in ("Open", "High", "Low", "Close")] == [today[k] for k in ("Open", "High", "Low", "Close")]
    assert q["Volume"] == today["TotalVolume"] and q["PreviousVolume"] == yesterday["TotalVolume"]
    assert q["PreviousClose"] == yesterday["Close"]
    assert float(q["NetChange"]) == pytest.approx(float(q["Last"]) - float(q["PreviousClose"]), abs=1e-9)
    assert float(q["NetChangePct"]) == pytest.approx(100 * float(q["NetChange"]) / float(q["PreviousClose"]), abs=0.01)
    assert today["TimeStamp"] == f"{day}T21:00:00Z"
    assert today["BarStatus"] == ("Open" if at is IN_SESSION else "Closed")


def test_in_the_session_the_last_is_todays_close_and_the_bars_being_built(market):
    em, token = market
    q = quote(em, token, "MSFT", IN_SESSION)
    daily, minute, five = (
        bars(em, token, "MSFT", **params)[-1]
        for params in ({}, {"unit": "Minute"}, {"unit": "Minute", "interval": "5"})
    )
    assert q["Last"] == q["Close"] == daily["Close"] == minute["Close"] == five["Close"]
    assert daily["BarStatus"] == minute["BarStatus"] == "Open" and daily["TimeStamp"] == "2026-12-02T21:00:00Z"
    assert minute["TimeStamp"] == "2026-12-02T16:48:00Z" and five["TimeStamp"] == "2026-12-02T16:50:00Z"
    weekly, monthly = (bars(em, token, "MSFT", unit=unit)[-1] for unit in ("Weekly", "Monthly"))
    assert weekly["Close"] == monthly["Close"] == q["Last"] and weekly["BarStatus"] == "Open"


def test_prices_sit_at_each_symbols_level(market):
    em, token = market
    em.market_clock = IN_SESSION
    body = api(em, "/v3/marketdata/quotes/" + ",".join(SYMBOLS), token).json()
    assert [q["Symbol"] for q in body["Quotes"]] == [*SYMBOLS] and len(SYMBOLS) >= 40
    for q in body["Quotes"]:
        assert 0.8 < float(q["Last"]) / SYMBOLS[q["Symbol"]].price < 1.25, q


@pytest.mark.parametrize("start", [PRE_MARKET, IN_SESSION, AFTER_CLOSE], ids=["pre", "in", "after"])
def test_bid_below_last_below_ask_for_every_known_symbol(market, start):
    em, token = market
    for n in range(12):
        em.market_clock = start + timedelta(seconds=37 * n)
        for q in api(em, "/v3/marketdata/quotes/" + ",".join(SYMBOLS), token).json()["Quotes"]:
            bid, last, ask = float(q["Bid"]), float(q["Last"]), float(q["Ask"])
            assert bid < last < ask and ask - bid <= last * 0.001, q
            assert int(q["BidSize"]) > 0 and int(q["AskSize"]) > 0


@pytest.mark.parametrize("symbol", ["MSFT", "AAPL", "SPY", "ESZ26"])
def test_a_quote_moves_from_one_moment_to_the_next(market, symbol):
    em, token = market
    first, later = quote(em, token, symbol, IN_SESSION), quote(em, token, symbol, IN_SESSION + timedelta(minutes=3))
    for field in ("Last", "Bid", "Ask", "Volume", "NetChange", "TradeTime"):
        assert first[field] != later[field], field
    assert first == quote(em, token, symbol, IN_SESSION)  # and is the same when asked again


def test_the_days_volume_grows_through_the_session_and_is_the_sum_of_its_minutes(market):
    em, token = market
    opening = datetime(2026, 12, 2, 9, 30, 1, tzinfo=EXCHANGE)
    volumes = [int(quote(em, token, "AAPL", opening + timedelta(minutes=7 * n))["Volume"]) for n in range(80)]
    assert volumes == sorted(volumes) and volumes[0] < volumes[1]
    assert volumes[-1] == volumes[60]  # from the close (16:30 and later here) it stays
    minutes = bars(em, token, "AAPL", unit="Minute", barsback=390, lastdate="2026-12-02T21:00:00Z")
    assert sum(int(b["TotalVolume"]) for b in minutes) == volumes[-1]


def test_a_closed_bar_is_the_same_whenever_it_is_asked_for(market):
    em, token = market
    asked = {"unit": "Minute", "interval": "15", "barsback": "20", "lastdate": "2026-11-27T20:00:00Z"}
    em.market_clock = IN_SESSION
    first = bars(em, token, "NVDA", **asked)
    em.market_clock = SATURDAY
    assert bars(em, token, "NVDA", **asked) == first
    assert all(b["BarStatus"] == "Closed" for b in first)
    # The day's 15-minute bars and its daily bar tell the same day.
    quarters = bars(em, token, "NVDA", unit="Minute", interval="15", barsback="200")
    day = [b for b in quarters if b["TimeStamp"].startswith("2026-12-01")]
    daily = bars(em, token, "NVDA", barsback=1, lastdate="2026-12-01")[0]
    assert day[-1]["Close"] == daily["Close"] and day[0]["Open"] == daily["Open"]
    assert max(float(b["High"]) for b in day) == float(daily["High"])
    assert min(float(b["Low"]) for b in day) == float(daily["Low"])


def test_a_quote_stream_is_the_quotes_at_each_moment(market):
    em, token = market
    em.market_clock = IN_SESSION
    got = stream(em, token, "marketdata/stream/quotes/MSFT,AAPL,SPY", 40)
    snapshot, marker, updates = got[:3], got[3], got[4:]
    assert marker == {"StreamStatus": "EndSnapshot"}
    rest = {q["Symbol"]: q for q in api(em, "/v3/marketdata/quotes/MSFT,AAPL,SPY", token).json()["Quotes"]}
    assert [{k: v for k, v in q.items() if k != "Description"} for q in snapshot] == list(rest.values())
    moments = [datetime.fromisoformat(u["TradeTime"].replace("Z", "+00:00")) for u in updates]
    assert moments == [IN_SESSION + timedelta(seconds=n + 1) for n in range(len(updates))]
    assert len({u["Last"] for u in updates if u["Symbol"] == "MSFT"}) > 1
    for u in updates[::6]:  # each one what the quotes say at that moment
        assert u == quote(em, token, u["Symbol"], datetime.fromisoformat(u["TradeTime"].replace("Z", "+00:00")))


def test_a_bar_stream_builds_the_bar_of_the_moment_and_closes_it(market):
    em, token = market
    start = datetime(2026, 12, 2, 11, 47, 50, tzinfo=EXCHANGE)  # the minute ends 10 updates in
    em.market_clock = start
    got = stream(em, token, "marketdata/stream/barcharts/MSFT", 25, unit="Minute", barsback=5)
    snapshot, updates = got[:5], got[6:]
    assert got[5] == {"StreamStatus": "EndSnapshot"} and snapshot[-1]["IsEndOfHistory"]
    rest = bars(em, token, "MSFT", unit="Minute", barsback=5)
    assert snapshot == [*rest[:-1], {**rest[-1], "IsEndOfHistory": True}] and rest[-1]["BarStatus"] == "Open"
    closing = [n for n, b in enumerate(updates) if b["BarStatus"] == "Closed"]
    assert len(closing) == 1 and updates[closing[0]]["TimeStamp"] == "2026-12-02T16:48:00Z"
    for n, bar in enumerate(updates):
        moment = start + timedelta(seconds=n + 1)
        if bar["BarStatus"] == "Open":
            assert bar["Close"] == quote(em, token, "MSFT", moment)["Last"]
    em.market_clock = start + timedelta(minutes=1)
    assert updates[closing[0]] == bars(em, token, "MSFT", unit="Minute", barsback=2)[0]


def test_symbols_it_does_not_know_are_refused_as_tradestation_refuses_them(market):
    em, token = market
    em.market_clock = IN_SESSION
    body = api(em, "/v3/marketdata/quotes/MSFT,NOPE,msft", token).json()
    assert [q["Symbol"] for q in body["Quotes"]] == ["MSFT"]
    assert body["Errors"] == [
        {"Symbol": "NOPE", "Error": "Invalid symbol"},
        {"Symbol": "msft", "Error": "Invalid symbol"},
    ]
    refused = api(em, "/v3/marketdata/barcharts/NOPE", token)
    assert (refused.status_code, refused.json()) == (400, {"Error": "BadRequest", "Message": "Invalid symbol: NOPE"})
    quotes = stream(em, token, "marketdata/stream/quotes/MSFT,ÉTÉ", 5)
    assert quotes[1] == {"Symbol": "ÉTÉ", "Error": "InvalidSymbol", "Message": "Invalid symbol"}
    assert quotes[0]["Symbol"] == "MSFT" and {q["Symbol"] for q in quotes[3:]} == {"MSFT"}
    em.configure_streams(heartbeat=0.05)
    refused, marker, beat = stream(em, token, "marketdata/stream/barcharts/NOPE", 3)
    assert refused == {"Symbol": "NOPE", "Error": "InvalidSymbol", "Message": "Invalid symbol"}
    assert marker == {"StreamStatus": "EndSnapshot"} and beat["Heartbeat"] == 1  # nothing else to say


def test_the_market_clock_needs_a_time_zone(market):
    em, _ = market
    with pytest.raises(ValueError, match="time zone"):
        em.market_clock = datetime(2026, 12, 2, 12, 0)
    em.market_clock = IN_SESSION.replace(microsecond=500)
    assert em.market_clock == IN_SESSION and em.market_clock.utcoffset() == timedelta(0)
    em.market_clock = None
    assert em.market_clock is None

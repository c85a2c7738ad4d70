"""DataFrames from the emulator's replies: bars (split past 57,600), quotes (batches of 100,
refused symbols as a warning), accounts, balances, positions and paged orders; and plots."""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timezone

import pandas as pd
import pytest

from ts_notebook import frames
from ts_notebook.errors import TSError
from ts_notebook.kernel.replies import APIError
from ts_notebook.kernel.session import TSSession

from .kernel.test_session import signed_in, signed_in_with  # noqa: F401 - the signed_in fixture
from .test_oauth import client  # noqa: F401 - the client fixture


@pytest.fixture
def session(signed_in):  # noqa: F811
    return TSSession(lambda: signed_in)


def barchart_calls(emulator) -> int:
    return sum("/barcharts/" in c["path"] for c in emulator.api_calls)


def test_daily_bars_are_a_frame_with_an_exchange_time_index_and_numbers(session):
    df = frames.bars(session, "MSFT", barsback=30)

    assert len(df) == 30 and df.index.is_monotonic_increasing and df.index.name == "Date"
    assert str(df.index.tz) == "America/New_York"
    assert list(df.columns[:5]) == ["Open", "High", "Low", "Close", "Volume"]
    assert [str(t) for t in df.dtypes[:5]] == ["float64"] * 4 + ["int64"]
    assert df["OpenInterest"].isna().all() and df["UpTicks"].dtype == "int64"
    assert (df["High"] >= df[["Open", "Close"]].max(axis=1)).all()


def test_intraday_bars_past_the_limit_are_split_and_joined_without_duplicates(session, emulator):
    emulator.market_clock = datetime(2026, 12, 2, 15, 0, 30, tzinfo=timezone.utc)  # one bar being built
    df = frames.bars(session, "MSFT", unit="Minute", barsback=60_000)

    assert len(df) == 60_000 and df.index.is_unique and df.index.is_monotonic_increasing
    assert df.index.name == "Datetime" and barchart_calls(emulator) == 2
    one = frames.bars(session, "MSFT", unit="Minute", barsback=10)
    assert df.tail(10).equals(one)  # the same bars, whichever request brought them


def test_intraday_bars_from_a_start_come_back_from_that_start(session):
    start = pd.Timestamp.now(tz="America/New_York").normalize() - pd.Timedelta(days=6)
    df = frames.bars(session, "AAPL", unit="Minute", interval=5, start=start)
    assert len(df) > 100 and df.index[0] >= start and df.index.is_unique


def test_quotes_come_in_batches_of_100_and_refused_symbols_are_a_warning(session, emulator):
    symbols = [f"U{n:03d}" for n in range(1, 121)] + ["BADX"]  # more than 100, one the emulator does not know
    with pytest.warns(UserWarning, match=r"TradeStation left out: BADX \(Invalid symbol\)$"):
        df = frames.quotes(session, symbols)

    assert len(df) == len(symbols) - 1 and df.index.name == "Symbol" and df["Last"].dtype == "float64"
    assert sum("/quotes/" in c["path"] for c in emulator.api_calls) == 2
    assert df["MarketFlags.IsDelayed"].dtype == bool
    assert [str(df[c].dtype) for c in ("Volume", "BidSize", "AskSize")] == ["int64"] * 3


def test_accounts_balances_positions_and_every_page_of_orders(session):
    assert list(frames.accounts(session).index) == ["11111111", "22222222"]
    balances = frames.balances(session)
    assert balances["CashBalance"].dtype == "float64" and len(balances) == 2
    positions = frames.positions(session, "11111111")
    assert len(positions) == 3 and positions["Quantity"].dtype == "int64"
    assert positions["AveragePrice"].dtype == "float64"
    orders = frames.orders(session, page_size=5)
    assert len(orders) == 46 and orders["OrderID"].is_unique


def test_a_missing_scope_raises_the_api_error(emulator, client_secret):
    source = signed_in_with(emulator, client_secret, "openid offline_access ReadAccount")
    with pytest.raises(APIError, match="lacks the MarketData scope"):
        frames.bars(TSSession(lambda: source), "MSFT")


def test_bad_parameters_are_the_apis_own_message(session):
    with pytest.raises(APIError, match="interval must be 1 to 1440 for Minute bars"):
        frames.bars(session, "MSFT", unit="Minute", interval=5000)


def test_bars_plot_with_matplotlib_and_mplfinance(session):
    import matplotlib

    matplotlib.use("Agg")
    import mplfinance as mpf

    df = frames.bars(session, "MSFT", barsback=60)
    ax = df["Close"].plot()
    assert len(ax.lines[0].get_xdata()) == 60
    fig, _ = mpf.plot(df, type="candle", volume=True, returnfig=True)
    assert fig is not None


def test_blank_null_and_missing_fields_are_nan_or_zero_never_an_error():
    rows = [
        {
            "TimeStamp": "2026-11-27T21:00:00Z",
            "Open": "1.5",
            "High": "2",
            "Low": "1",
            "Close": "",
            "TotalVolume": "10",
            "OpenInterest": None,
            "UpTicks": 3,
            "IsRealtime": False,
        },
        {"TimeStamp": "2026-11-26T21:00:00Z", "Open": "1.25", "High": "2", "Low": "1", "Close": "1.75"},
    ]
    df = frames.bar_frame(rows, intraday=False)
    assert list(df.columns[:5]) == ["Open", "High", "Low", "Close", "Volume"]
    assert pd.isna(df["Close"].iloc[0]) and df["Close"].iloc[1] == 1.75
    assert df["Volume"].tolist() == [10, 0] and df["UpTicks"].tolist() == [3, 0]
    assert df["IsRealtime"].tolist() == [False, False] and df["OpenInterest"].isna().all()
    assert frames.bar_frame([], intraday=True).index.name == "Datetime"


def test_overlapping_pages_join_with_each_bar_once_in_time_order():
    from ts_notebook.emulator.market import barchart

    now = datetime.now(timezone.utc)
    rows = barchart("MSFT", {"unit": "Minute", "barsback": "100"}, now)["Bars"]
    newer, older = frames.bar_frame(rows[40:], True), frames.bar_frame(rows[:60], True)  # 20 bars in both

    joined = frames.join_pages([newer, older])

    assert len(joined) == 100 and joined.index.is_unique and joined.index.is_monotonic_increasing
    assert joined.equals(frames.bar_frame(rows, True))


def test_naive_start_and_end_are_both_exchange_time(session):
    from datetime import datetime, timedelta

    day = datetime.now() - timedelta(days=3)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    start, end = day.replace(hour=9, minute=30, second=0), day.replace(hour=16, minute=0, second=0)

    df = frames.bars(session, "MSFT", unit="Minute", start=start, end=end)

    assert len(df) == 390  # the whole regular session, 9:31 to 16:00 in New York
    assert str(df.index[0].time()) == "09:31:00" and str(df.index[-1].time()) == "16:00:00"


def test_symbol_details_are_a_frame_by_symbol_with_numbers_and_refused_symbols_a_warning(session, emulator):
    wanted = ["MSFT", "ESZ26", "NOPE", *[f"U{n:03d}" for n in range(1, 60)]]  # past 50: two requests

    with pytest.warns(UserWarning, match=r"TradeStation left out: NOPE \(Invalid symbol.\)"):
        details = frames.symbols(session, wanted)

    assert list(details.index) == [s for s in wanted if s != "NOPE"]
    assert details.attrs["errors"] == {"NOPE": "Invalid symbol."}
    assert {"Description", "Exchange", "AssetType", "PriceDecimals", "PriceIncrement", "PointValue"} <= set(details)
    es, msft = details.loc["ESZ26"], details.loc["MSFT"]
    assert (es["AssetType"], es["PointValue"], es["PriceIncrement"], es["Root"]) == ("FUTURE", 50.0, 0.25, "ES")
    assert (msft["Exchange"], msft["PointValue"], msft["PriceDecimals"]) == ("NASDAQ", 1.0, 2.0)
    assert sum("/marketdata/symbols/" in c["path"] for c in emulator.api_calls) == 2


def test_an_option_chain_is_a_frame_by_expiration_strike_and_side_with_the_greeks(session, emulator):
    listed = frames.expirations(session, "MSFT")
    assert list(listed.columns) == ["Date", "Type"] and listed["Date"].is_monotonic_increasing
    assert {"Weekly", "Monthly"} <= set(listed["Type"])
    monthly = listed[listed["Type"] == "Monthly"]["Date"].iloc[0]

    chain = frames.options(session, "MSFT", expiration=monthly, strikes=3)

    assert chain.index.names == ["Expiration", "Strike", "Side"] and len(chain) == 7 * 2
    assert set(chain.index.get_level_values("Expiration")) == {monthly}
    assert list(chain.columns[:12]) == [
        "Symbol", "Bid", "Ask", "Last", "Volume", "OpenInterest", "ImpliedVolatility",
        "Delta", "Gamma", "Theta", "Vega", "Rho",
    ]  # fmt: skip
    calls, puts = chain.xs("Call", level="Side"), chain.xs("Put", level="Side")
    assert (calls["Delta"].between(0, 1)).all() and (puts["Delta"].between(-1, 0)).all()
    assert calls["Delta"].is_monotonic_decreasing and (chain["Bid"] <= chain["Ask"]).all()
    assert chain["OpenInterest"].dtype == "int64" and chain["ImpliedVolatility"].dtype == "float64"
    assert frames.options(session, "MSFT").index.get_level_values("Expiration")[0] == listed["Date"].iloc[0]
    assert emulator.streams_open <= 1  # each chain's stream is let go once its snapshot is read


def test_an_underlying_with_no_options_says_so(session):
    with pytest.raises(TSError, match="no such option chain.*No options for NOPE"):
        frames.options(session, "NOPE")
    with pytest.raises(APIError, match="No options for NOPE"):
        frames.expirations(session, "NOPE")
    with pytest.raises(TSError, match="strikes must be"):
        frames.options(session, "MSFT", strikes=0)


def test_a_forked_child_turns_replies_in_a_thread_of_its_own(session):
    frames.bars(session, "MSFT", barsback=5)  # the parent's turning thread made
    child = os.fork()
    if child == 0:  # the child: its parent's thread is not there
        try:
            ok = len(frames.bars(session, "MSFT", barsback=5)) == 5
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        pytest.fail("the forked child waited for a thread that is not there")
    assert os.waitstatus_to_exitcode(status) == 0


def test_bars_joined_from_pages_are_the_users_to_change(session):
    df = frames.bars(session, "MSFT", unit="Minute", barsback=60_000)

    df.iloc[0, df.columns.get_loc("Close")] = 1.5

    assert df["Close"].iloc[0] == 1.5

"""ts.download against the emulator as a real HTTP server: fixed shapes for one symbol and for
many, refused and failing symbols reported while the rest arrive, and a 429 storm that pauses
every worker until the reset with nothing lost."""

from __future__ import annotations

import threading
import warnings
from dataclasses import replace

import pandas as pd
import pytest

from ts_notebook import bulk
from ts_notebook.errors import TSError
from ts_notebook.kernel.replies import APIError
from ts_notebook.kernel.session import TSSession

from .kernel.test_session import signed_in  # noqa: F401 - the signed_in fixture
from .test_oauth import client  # noqa: F401 - the client fixture

FIELDS = ["Open", "High", "Low", "Close", "Volume"]
# Requests sent before a 429's answer reached its worker may arrive just after it.
IN_FLIGHT = 0.05


@pytest.fixture
def session(signed_in):  # noqa: F811
    return TSSession(lambda: signed_in)


def bar_calls(emulator) -> list[dict]:
    return [c for c in emulator.api_calls if "/barcharts/" in c["path"]]


@pytest.mark.parametrize("symbols", [["MSFT"], ["MSFT", "AAPL", "SPY"]])
def test_the_wide_shape_is_field_by_symbol_whatever_the_number_of_symbols(session, symbols):
    frame = bulk.download(session, symbols, barsback=30, progress=False)

    assert frame.columns.names == ["Field", "Symbol"]
    assert list(frame.columns.get_level_values("Field").unique())[:5] == FIELDS
    assert list(frame.columns.get_level_values("Symbol").unique()) == symbols
    assert frame.index.name == "Date" and str(frame.index.tz) == "America/New_York" and len(frame) == 30
    assert frame["Close"].shape == (30, len(symbols)) and frame.attrs["errors"] == {}
    alone = bulk.frames.bars(session, symbols[-1], barsback=30)
    pd.testing.assert_series_equal(frame["Close"][symbols[-1]], alone["Close"], check_names=False)


def test_the_long_shape_is_one_row_per_symbol_and_bar(session):
    frame = bulk.download(session, "MSFT AAPL", unit="Minute", interval=5, barsback=20, layout="long", progress=False)

    assert frame.index.names == ["Symbol", "Datetime"] and len(frame) == 40
    assert list(frame.columns[:5]) == FIELDS
    assert list(frame.index.get_level_values("Symbol").unique()) == ["MSFT", "AAPL"]


def test_a_refused_symbol_and_a_failing_one_are_reported_and_the_rest_arrive(session, signed_in, emulator, monkeypatch):  # noqa: F811
    monkeypatch.setattr(bulk, "FAILURE_FIRST", 0.05)
    signed_in.snap = replace(signed_in.snap, max_retries=1)
    emulator.failing_symbols = {"AAPL"}

    with pytest.warns(UserWarning, match=r"no bars for 2 of 4 symbols .*NOPE: .*Invalid symbol.*AAPL: failed 3 times"):
        frame = bulk.download(session, ["MSFT", "NOPE", "AAPL", "SPY"], barsback=10, progress=False)

    assert list(frame.columns.get_level_values("Symbol").unique()) == ["MSFT", "SPY"]
    assert set(frame.attrs["errors"]) == {"NOPE", "AAPL"} and "503" in frame.attrs["errors"]["AAPL"]
    assert frame["Close"].notna().all().all()
    # The failing symbol was tried 3 times, each with ts.session's own retry.
    assert sum(c["path"].endswith("/AAPL") for c in bar_calls(emulator)) == 3 * 2


def test_a_429_storm_pauses_every_worker_until_the_reset_and_loses_nothing(session, signed_in, emulator):  # noqa: F811
    """20 symbols, 8 workers, a quota of 6 requests per 2 s: every worker waits out the reset
    the 429 gives; no request is sent between a 429 and its reset; every symbol arrives. With
    ts.session's own retries off, as when the reset is past its retry budget (TradeStation's
    bar quota is 500 requests per 5 minutes), the download's pause alone holds the workers."""
    signed_in.snap = replace(signed_in.snap, max_retries=0)
    emulator.rate_limit = (6, 2.0)
    symbols = [f"U{n:03d}" for n in range(1, 21)]

    frame = bulk.download(session, symbols, barsback=5, progress=False)

    assert list(frame.columns.get_level_values("Symbol").unique()) == symbols and frame.attrs["errors"] == {}
    calls = sorted(bar_calls(emulator), key=lambda c: c["at"])
    refused = [c for c in calls if c["status"] == 429]
    assert refused and sum(c["status"] == 200 for c in calls) == 20
    for no in refused:  # once a 429 is answered, nobody sends again before its reset
        early = [c for c in calls if no["at"] + IN_FLIGHT < c["at"] < no["at"] + no["reset"]]
        assert early == [], (no, early)


def test_bad_input_is_a_clear_message_and_sends_nothing(session, emulator):
    for symbols in ([], "", [" "], [1, 2]):
        with pytest.raises(TSError, match="symbol"):
            bulk.download(session, symbols, progress=False)
    with pytest.raises(TSError, match="threads must be"):
        bulk.download(session, ["MSFT"], threads=0, progress=False)
    with pytest.raises(TSError, match="layout must be"):
        bulk.download(session, ["MSFT"], layout="tall", progress=False)
    assert bar_calls(emulator) == []
    with pytest.raises(APIError, match="unit"), warnings.catch_warnings():
        warnings.simplefilter("error")
        bulk.download(session, ["MSFT", "AAPL"], unit="Fortnightly", progress=False)  # no one symbol's fault


def test_every_symbol_refused_still_gives_the_fixed_shape(session):
    with pytest.warns(UserWarning, match="no bars for 2 of 2"):
        frame = bulk.download(session, ["NOPE", "NADA"], barsback=5, progress=False)

    assert frame.empty and frame.columns.names == ["Field", "Symbol"] and frame.index.name == "Date"
    assert set(frame.attrs["errors"]) == {"NOPE", "NADA"}


def test_the_terminal_progress_bar_counts_symbols_and_bars_and_says_when_it_waits_for_the_rate_limit(
    session,
    signed_in,  # noqa: F811
    emulator,
    capsys,
):
    signed_in.snap = replace(signed_in.snap, max_retries=0)
    emulator.rate_limit = (4, 1.0)

    bulk.download(session, [f"U{n:03d}" for n in range(1, 9)], barsback=5, threads=4)

    shown = capsys.readouterr().err  # tqdm's text bar, in a terminal
    assert "8/8" in shown and "40 bars" in shown and "for the rate limit" in shown
    assert "symbol" in shown


def test_progress_false_prints_nothing(session, capsys):
    bulk.download(session, ["MSFT", "AAPL"], barsback=5, progress=False)

    assert capsys.readouterr().err == ""


def test_replies_are_turned_into_columns_in_one_thread_whatever_the_workers(session, monkeypatch):
    # While a reply is turned, each bar is an object (1 KB a bar): one thread's high-water mark
    # stays with the process, not one per worker.
    turned_in: set[str] = set()
    turn = bulk.frames.bar_columns_of

    def spy(*args, **kwargs):
        turned_in.add(threading.current_thread().name)
        return turn(*args, **kwargs)

    monkeypatch.setattr(bulk.frames, "bar_columns_of", spy)

    frame = bulk.download(session, [f"U{n:03d}" for n in range(1, 13)], barsback=20, threads=6, progress=False)

    assert frame["Close"].shape == (20, 12) and len(turned_in) == 1


def test_the_sessions_own_response_hooks_still_see_every_reply(session):
    seen = []
    session.hooks["response"].append(lambda r, *a, **k: seen.append(r.status_code))

    bulk.download(session, ["MSFT", "AAPL", "SPY"], barsback=5, progress=False, cache=False)

    assert seen == [200, 200, 200]  # (the download's own hook, for the rate limit, is beside them)


def test_a_symbol_whose_replies_break_off_midway_is_reported_and_the_rest_arrive(session, emulator, monkeypatch):
    monkeypatch.setattr(bulk, "FAILURE_FIRST", 0.05)
    emulator.cut_symbols = {"AAPL"}  # the connection drops halfway through each of its replies

    with pytest.warns(UserWarning, match=r"no bars for 1 of 3 symbols \(AAPL: failed 3 times \(last: ReplyCut\)\)"):
        frame = bulk.download(session, ["MSFT", "AAPL", "SPY"], barsback=5, progress=False, cache=False)

    assert list(frame["Close"].columns) == ["MSFT", "SPY"] and len(frame) == 5
    assert [c["path"].rsplit("/", 1)[-1] for c in bar_calls(emulator)].count("AAPL") == 3
    with pytest.raises(TSError, match="reply of bars for AAPL broke off before its end.*Try again"):
        bulk.frames.bars(session, "AAPL", barsback=5)

"""Bars kept on this machine, through ts.download against the emulator as a real HTTP server:
a rerun asks only for what is missing, open bars are never kept, a revised bar replaces the
one kept, two processes share a store, a damaged file is set aside and refetched, and another
sign-in never sees this one's bars."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from ts_notebook import bulk, frames
from ts_notebook.barcache import BarCache, Damaged, Key
from ts_notebook.kernel.session import TSSession

from .kernel.test_session import signed_in  # noqa: F401 - the signed_in fixture
from .test_oauth import client  # noqa: F401 - the client fixture

SYMBOLS = ["MSFT", "AAPL", "SPY"]
# A Wednesday at 15:00 in New York: the day's bar is being built.
IN_SESSION = datetime(2026, 12, 2, 20, 0, tzinfo=timezone.utc)


@pytest.fixture
def session(signed_in, emulator):  # noqa: F811
    signed_in.snap = replace(signed_in.snap, user={"sub": "auth0|analyst", "name": "analyst"})
    emulator.market_clock = IN_SESSION
    return TSSession(lambda: signed_in)


def bar_calls(emulator) -> list[dict]:
    return [c for c in emulator.api_calls if "/barcharts/" in c["path"]]


def kept(session) -> BarCache:
    return bulk.cache_for(session)


def test_a_rerun_of_a_past_range_asks_nothing_and_gives_the_same_frame(session, emulator):
    first = bulk.download(session, SYMBOLS, start="2026-06-01", end="2026-09-30", progress=False)
    asked = len(bar_calls(emulator))

    again = bulk.download(session, SYMBOLS, start="2026-06-01", end="2026-09-30", progress=False)

    assert asked == 3 and len(bar_calls(emulator)) == asked  # served from the cache alone
    pd.testing.assert_frame_equal(first, again)
    uncached = bulk.download(session, SYMBOLS, start="2026-06-01", end="2026-09-30", progress=False, cache=False)
    pd.testing.assert_frame_equal(first, uncached)


def test_a_wider_range_asks_only_for_the_part_not_kept(session, emulator):
    bulk.download(session, ["MSFT"], start="2026-06-01", end="2026-09-30", progress=False)
    before = len(bar_calls(emulator))

    wider = bulk.download(session, ["MSFT"], start="2026-05-01", end="2026-10-30", progress=False)

    assert len(bar_calls(emulator)) - before == 2  # May, and October: the gaps either side
    alone = bulk.download(session, ["MSFT"], start="2026-05-01", end="2026-10-30", progress=False, cache=False)
    pd.testing.assert_frame_equal(wider, alone)
    cache = kept(session)
    spans = cache.spans(Key("MSFT", "Daily", 1, "Default"))
    cache.close()
    assert len(spans) == 1  # end to end: one span, so a rerun is read with the others, in one query


def last_held(session, symbol: str = "MSFT") -> str:
    cache = kept(session)
    try:
        return cache.read(Key(symbol, "Daily", 1, "Default"), newest=1)[0]["TimeStamp"]
    finally:
        cache.close()


def test_a_range_ending_now_asks_only_the_tail_and_never_keeps_the_open_bar(session, emulator):
    first = bulk.download(session, SYMBOLS, barsback=60, progress=False)
    assert first.index[-1].date() == IN_SESSION.date()  # today's bar, still being built ...
    assert last_held(session).startswith("2026-12-01")  # ... is not kept
    emulator.market_clock = IN_SESSION.replace(day=3)  # a day later
    before = len(bar_calls(emulator))

    later = bulk.download(session, SYMBOLS, barsback=60, progress=False)

    tail = bar_calls(emulator)[before:]
    assert len(tail) == 3 and all("firstdate" in c["params"] and "barsback" not in c["params"] for c in tail)
    fresh = bulk.download(session, SYMBOLS, barsback=60, progress=False, cache=False)
    pd.testing.assert_frame_equal(later, fresh)
    assert last_held(session).startswith("2026-12-02")  # the bar open at first, closed since


def test_a_revised_bar_replaces_the_one_kept(session, emulator):
    first = bulk.download(session, ["MSFT"], barsback=10, progress=False)
    emulator.bar_revision = 1_000  # the vendor corrects its volumes

    again = bulk.download(session, ["MSFT"], barsback=10, progress=False)

    yesterday = first.index[-2]
    assert again.loc[yesterday, ("Volume", "MSFT")] == first.loc[yesterday, ("Volume", "MSFT")] + 1_000


def test_the_cache_is_private_to_the_user_and_to_the_sign_in(session, signed_in, emulator):  # noqa: F811
    bulk.download(session, ["MSFT"], start="2026-06-01", end="2026-06-30", progress=False)
    cache = kept(session)
    path = cache.path
    cache.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    before = len(bar_calls(emulator))

    signed_in.snap = replace(signed_in.snap, user={"sub": "auth0|someone-else"})  # another sign-in
    bulk.download(session, ["MSFT"], start="2026-06-01", end="2026-06-30", progress=False)

    assert len(bar_calls(emulator)) == before + 1  # asked: this one's bars are not served to it
    other = kept(session)
    assert other.path != path
    other.close()


def test_a_damaged_cache_file_is_reported_set_aside_and_refetched(session, emulator):
    bulk.download(session, ["MSFT"], start="2026-06-01", end="2026-06-30", progress=False)
    cache = kept(session)
    path = cache.path
    cache.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"this is not a database" * 100)
    before = len(bar_calls(emulator))

    with pytest.warns(UserWarning, match="could not be read.*fetched again"):
        frame = bulk.download(session, ["MSFT"], start="2026-06-01", end="2026-06-30", progress=False)

    assert len(frame) > 15 and len(bar_calls(emulator)) == before + 1
    assert [p.name for p in path.parent.glob("*.damaged-*")]


def keep_many(path: str, offset: int, rounds: int) -> None:
    """In a process of its own: keep bars of MSFT again and again, as a second download would."""
    cache = BarCache(Path(path))
    key = Key("MSFT", "Daily", 1, "Default")
    for n in range(rounds):
        rows = [
            {"TimeStamp": f"2026-01-{d:02d}T21:00:00Z", "Close": str(offset + n), "TotalVolume": "1"}
            for d in range(1, 29)
        ]
        cache.keep(key, frames.bar_frame(rows, intraday=False), 0, 10**13)
    cache.close()


def test_two_processes_keeping_the_same_bars_at_once_leave_a_consistent_store(tmp_path):
    path = str(tmp_path / "bars.sqlite")
    BarCache(Path(path)).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=keep_many, args=(path, offset, 40)) for offset in (1000, 2000)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)

    assert [w.exitcode for w in workers] == [0, 0]
    cache = BarCache(Path(path))
    held = cache.read(Key("MSFT", "Daily", 1, "Default"))
    spans = cache.spans(Key("MSFT", "Daily", 1, "Default"))
    cache.close()
    assert len(held) == 28 and len({b["TimeStamp"] for b in held}) == 28  # each bar once
    assert {b["Close"] for b in held} <= {1039.0, 2039.0} and len({b["Close"] for b in held}) == 1  # one writer's last
    assert spans == [(0, 10**13)]
    assert os.path.exists(path)


def test_ts_cache_shows_what_is_kept_and_its_size_and_clears_one_symbol(session, emulator):
    bulk.download(session, ["MSFT", "AAPL"], start="2026-06-01", end="2026-06-30", progress=False)
    view = bulk.CacheView(lambda: session)

    info = view.info()
    cleared = view.clear("MSFT")
    after = view.info()

    assert list(info["Symbol"]) == ["AAPL", "MSFT"] and (info["Bars"] > 15).all()
    assert info.attrs["bytes"] > 0 and info.attrs["path"].endswith(".sqlite")
    assert cleared == info.set_index("Symbol").loc["MSFT", "Bars"] and list(after["Symbol"]) == ["AAPL"]
    before = len(bar_calls(emulator))
    bulk.download(session, ["MSFT", "AAPL"], start="2026-06-01", end="2026-06-30", progress=False)
    assert len(bar_calls(emulator)) == before + 1  # MSFT asked again, AAPL still kept


def test_symbols_held_whole_are_read_together_and_only_the_others_are_asked(session, emulator):
    bulk.download(session, ["MSFT", "AAPL"], start="2026-06-01", end="2026-07-31", progress=False)
    before = len(bar_calls(emulator))

    mixed = bulk.download(session, ["SPY", "MSFT", "AAPL"], start="2026-06-01", end="2026-07-31", progress=False)

    assert [c["path"].rsplit("/", 1)[-1] for c in bar_calls(emulator)[before:]] == ["SPY"]
    assert list(mixed.columns.get_level_values("Symbol").unique()) == ["SPY", "MSFT", "AAPL"]
    fresh = bulk.download(
        session, ["SPY", "MSFT", "AAPL"], start="2026-06-01", end="2026-07-31", progress=False, cache=False
    )
    pd.testing.assert_frame_equal(mixed, fresh)


def test_bars_across_stretches_of_the_store_read_back_whole(session, emulator):
    # Hourly bars over four months: several four-week stretches of the store.
    asked = dict(unit="Minute", interval=60, start="2026-06-01", end="2026-09-30", progress=False)
    first = bulk.download(session, ["MSFT"], **asked)
    cache = kept(session)
    try:
        stretches = cache._db.execute("SELECT count(*) FROM stretches").fetchone()[0]
    finally:
        cache.close()
    before = len(bar_calls(emulator))

    again = bulk.download(session, ["MSFT"], **asked)

    assert stretches >= 4 and len(bar_calls(emulator)) == before  # read back, not asked
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(first, bulk.download(session, ["MSFT"], cache=False, **asked))


def test_a_file_of_an_earlier_layout_is_set_aside_and_refetched(session, emulator):
    cache = kept(session)
    path = cache.path
    cache.close()
    path.unlink()
    old = sqlite3.connect(path)
    old.execute("PRAGMA user_version = 1")
    old.close()

    with pytest.warns(UserWarning, match="another version of ts_notebook.*fetched again"):
        frame = bulk.download(session, ["MSFT"], start="2026-06-01", end="2026-06-30", progress=False)

    assert len(frame) > 15 and [p.name for p in path.parent.glob("*.damaged-*")]


@pytest.mark.parametrize("how", ["download", "bars"])
def test_a_damaged_stretch_in_a_sound_file_is_reported_forgotten_and_refetched(session, emulator, how):
    asked = dict(start="2026-06-01", end="2026-07-31")
    first = bulk.download(session, ["MSFT", "AAPL"], progress=False, **asked)
    cache = kept(session)
    with cache._writing() as db:  # a blob cut short (a disk's bad sector: SQLite checks no blob)
        db.execute("UPDATE stretches SET data = substr(data, 1, 60) WHERE symbol = 'MSFT'")
    cache.close()
    before = len(bar_calls(emulator))

    with pytest.warns(UserWarning, match="bars kept for MSFT could not be read.*fetched again"):
        if how == "download":
            again = bulk.download(session, ["MSFT", "AAPL"], progress=False, **asked)
        else:
            again = bulk.one(session, "MSFT", cache=kept(session), **asked).frame()

    assert [c["path"].rsplit("/", 1)[-1] for c in bar_calls(emulator)[before:]] == ["MSFT"]  # AAPL still kept
    expected = first if how == "download" else first.xs("MSFT", axis=1, level="Symbol")
    pd.testing.assert_frame_equal(again, expected, check_names=False)
    later = len(bar_calls(emulator))
    bulk.download(session, ["MSFT", "AAPL"], progress=False, **asked)
    assert len(bar_calls(emulator)) == later  # kept again, whole


def test_keeping_bars_over_a_damaged_stretch_replaces_it_and_holds_no_span_whole(tmp_path):
    cache = BarCache(tmp_path / "bars.sqlite")
    key = Key("MSFT", "Daily", 1, "Default")
    rows = [{"TimeStamp": f"2026-01-{d:02d}T21:00:00Z", "Close": str(d), "TotalVolume": "1"} for d in range(1, 29)]
    cache.keep(key, frames.bar_frame(rows, intraday=False), 0, 10**13)
    with cache._writing() as db:
        db.execute("UPDATE stretches SET data = substr(data, 1, 60)")

    with pytest.warns(UserWarning, match="bars kept for MSFT could not be read"), pytest.raises(Damaged):
        cache.keep(key, frames.bar_frame(rows[-2:], intraday=False), 10**12, 10**13)

    assert [b["Close"] for b in cache.read(key)] == [27.0, 28.0] and cache.spans(key) == [(10**12, 10**13)]
    cache.close()


def test_bars_out_of_order_or_twice_in_a_reply_are_kept_in_order_once_the_last_copy_winning(tmp_path):
    cache = BarCache(tmp_path / "bars.sqlite")
    key = Key("MSFT", "Daily", 1, "Default")
    rows = [{"TimeStamp": f"2026-01-{d:02d}T21:00:00Z", "Close": str(d), "TotalVolume": "1"} for d in range(28, 0, -1)]
    rows.append({"TimeStamp": "2026-01-05T21:00:00Z", "Close": "500", "TotalVolume": "1"})  # again, revised

    cache.keep(key, frames.bar_frame(rows, intraday=False), 0, 10**13)

    held = cache.read(key)
    cache.close()
    assert [b["TimeStamp"][8:10] for b in held] == [f"{d:02d}" for d in range(1, 29)]
    assert held[4]["Close"] == 500.0


def test_a_frame_served_from_the_cache_is_the_users_to_change(session, emulator):
    for _ in range(2):  # asked, then kept
        cache = kept(session)
        frame = bulk.one(session, "MSFT", start="2026-06-01", end="2026-06-30", cache=cache).frame()
        cache.close()

    frame.iloc[0, frame.columns.get_loc("Close")] = 1.5
    frame["Volume"] *= 2

    assert frame["Close"].iloc[0] == 1.5


@pytest.mark.parametrize(
    "damage",
    ["UPDATE stretches SET bars = bars - 1", "UPDATE stretches SET data = ?"],
    ids=["count-wrong", "times-out-of-order"],
)
def test_a_stretch_that_does_not_hold_together_is_damaged_never_misread(tmp_path, damage):
    import numpy as np

    from ts_notebook.barcache import _encode

    cache = BarCache(tmp_path / "bars.sqlite")
    key = Key("MSFT", "Daily", 1, "Default")
    rows = [{"TimeStamp": f"2026-01-{d:02d}T21:00:00Z", "Close": str(d), "TotalVolume": "1"} for d in range(1, 29)]
    cache.keep(key, frames.bar_frame(rows, intraday=False), 0, 10**13)
    backwards = _encode(np.arange(28, 0, -1, dtype=np.int64), {"Close": np.zeros(28)})
    with cache._writing() as db:
        db.execute(damage, (backwards,) if "?" in damage else ())

    with pytest.warns(UserWarning, match="bars kept for MSFT could not be read"), pytest.raises(Damaged):
        cache.read(key)
    cache.close()

"""TradeStation's streams through ts.session against the emulator's real chunked replies:
any chunking, heartbeats, EndSnapshot, GoAway, drops, silence, errors, and letting go."""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from ts_notebook.kernel.replies import APIError
from ts_notebook.kernel.session import TSSession
from ts_notebook.kernel.streams import JSONLines, StreamFailed

from ...parts.waiting import eventually_sync
from ..test_oauth import client  # noqa: F401 - the client fixture
from .test_session import FixedSource, signed_in  # noqa: F401 - the signed_in fixture

QUOTES = "marketdata/stream/quotes/MSFT,AAPL,SPY"


def sample() -> list[dict]:
    return [{"Symbol": f"S{i}", "Last": f"{i}.25", "Description": "Ünïcødé ☃ €"} for i in range(40)] + [
        {"StreamStatus": "EndSnapshot"},
        {"Heartbeat": 3, "Timestamp": "2026-11-29T10:00:00Z"},
    ]


@pytest.mark.parametrize("seed", range(20))
def test_json_lines_are_right_whatever_the_chunking(seed):
    data = b"".join(json.dumps(o, ensure_ascii=False).encode() + b"\n" for o in sample())
    rng, at, out, lines = random.Random(seed), 0, [], JSONLines()
    while at < len(data):
        size = rng.choice([1, 2, 3, 7, 64, 4096])
        out += lines.feed(data[at : at + size])
        at += size
    assert out == sample()


def test_json_lines_take_objects_with_no_newline_between_and_crlf():
    lines = JSONLines()
    assert lines.feed(b'{"a":1}{"b":2}\r\n{"c"') == [{"a": 1}, {"b": 2}]
    assert lines.feed(b":3}\n") == [{"c": 3}]


def test_json_lines_skip_blank_lines_between_objects():
    assert JSONLines().feed(b'{"a":1}\n\n \r\n{"b":2}\r\n{"c":3}') == [{"a": 1}, {"b": 2}]


@pytest.fixture
def session(signed_in, emulator):  # noqa: F811
    emulator.configure_streams(interval=0.05, heartbeat=5.0, goaway_after=None, rechunk_seed=7)
    return TSSession(lambda: signed_in)


def take(stream, n: int) -> list[dict]:
    out = []
    for item in stream:
        out.append(item)
        if len(out) == n:
            break
    return out


def test_a_rechunked_quote_stream_gives_the_snapshot_then_updates(session, emulator):
    with session.iter_stream(QUOTES) as stream:
        items = take(stream, 6)
        assert stream.snapshot_done
    assert [i["Symbol"] for i in items[:3]] == ["MSFT", "AAPL", "SPY"]
    assert items[0]["Description"] == "MSFT Ünïcødé ☃ Corp" and all("Last" in i for i in items)
    assert not any("StreamStatus" in i or "Heartbeat" in i for i in items)
    eventually_sync(lambda: emulator.streams_open == 0, what="the stream let go")


def test_heartbeats_and_markers_are_given_only_when_asked(session, emulator):
    emulator.configure_streams(interval=0.3, heartbeat=0.05)  # heartbeats between the updates
    with session.iter_stream(QUOTES, heartbeats=True, markers=True) as stream:
        items = take(stream, 6)
    assert items[3] == {"StreamStatus": "EndSnapshot"} and "Heartbeat" in items[4] and "Heartbeat" in items[5]
    with session.iter_stream(QUOTES) as stream:
        quiet = take(stream, 6)
    assert all("Symbol" in i and "Last" in i for i in quiet)  # heartbeats and the marker swallowed


def test_goaway_opens_the_stream_again_with_the_current_token(session, signed_in, emulator):  # noqa: F811
    emulator.configure_streams(goaway_after=4)
    with session.iter_stream(QUOTES) as stream:
        first = take(stream, 3)
        emulator.revoke_access_tokens()  # the token lapses while streaming
        more = take(stream, 8)
        assert stream.reconnects >= 2
    assert len(first) == 3 and len(more) == 8 and signed_in.renewals >= 1
    assert emulator.streams_opened >= 3 and not any("StreamStatus" in i for i in first + more)


@pytest.mark.parametrize("kind", ["drop", "silent"])
def test_a_dropped_or_silent_stream_is_opened_again(session, emulator, kind):
    emulator.break_next_stream(kind, after=5)
    with session.iter_stream(QUOTES, silence=0.5) as stream:
        items = take(stream, 12)
        assert stream.reconnects == 1
    assert len(items) == 12
    assert [i["Symbol"] for i in items[4:7]] == ["MSFT", "AAPL", "SPY"]  # the new connection's snapshot


def test_dual_logon_raises_the_api_error_that_says_what_to_do(session, emulator):
    emulator.break_next_stream("error", after=3, error="DualLogon")
    with pytest.raises(APIError, match="DualLogon on GET marketdata/stream/quotes/.*Close the other one") as caught:
        take(session.iter_stream(QUOTES), 100)
    assert caught.value.error == "DualLogon"
    eventually_sync(lambda: emulator.streams_open == 0, what="the stream let go")


def test_a_stream_the_sign_in_lacks_the_scope_for_is_refused_at_once(emulator, client_secret):
    from .test_session import signed_in_with

    source = signed_in_with(emulator, client_secret, "openid offline_access ReadAccount")
    with pytest.raises(APIError, match="lacks the MarketData scope"):
        next(TSSession(lambda: source).iter_stream(QUOTES))
    assert emulator.streams_opened == 0


def test_close_from_another_thread_ends_a_blocked_read_at_once(session, emulator):
    emulator.configure_streams(interval=60.0, heartbeat=60.0)  # nothing after the snapshot
    stream = session.iter_stream(QUOTES)
    take(stream, 3)
    threading.Timer(0.3, stream.close).start()
    assert list(stream) == []  # the blocked read woke up: it would hang otherwise
    eventually_sync(lambda: emulator.streams_open == 0, what="the stream let go")


def test_breaking_out_of_a_loop_releases_the_connection(session, emulator):
    for _ in session.iter_stream(QUOTES):
        break
    import gc

    gc.collect()  # a dropped iterator is finalised: its connection closes
    eventually_sync(lambda: emulator.streams_open == 0, what="the stream let go")


def test_a_stream_that_keeps_failing_gives_up_with_a_clear_error(session, emulator):
    for _ in range(3):
        emulator.break_next_stream("drop", after=0)
    with pytest.raises(StreamFailed, match="failed 3 times in a row"):
        take(session.iter_stream(QUOTES, max_reconnects=2), 5)


def test_a_stream_recut_by_a_proxy_in_between_reads_the_same(signed_in, emulator):  # noqa: F811
    from ...parts.fakes import RechunkingProxy

    emulator.configure_streams(interval=0.02, heartbeat=5.0, goaway_after=None, rechunk_seed=None)
    emulator.market_clock = datetime(2026, 12, 2, 15, 0, tzinfo=timezone.utc)  # each connection: the same quotes
    direct = take(TSSession(lambda: signed_in).iter_stream(QUOTES), 30)
    host, port = emulator.url.removeprefix("http://").split(":")
    proxy = RechunkingProxy((host, int(port)), seed=4)
    try:
        signed_in.snap = replace(signed_in.snap, api_url=f"{proxy.url}/v3", api_origins=(proxy.url,))
        recut = take(TSSession(lambda: signed_in).iter_stream(QUOTES), 30)
    finally:
        proxy.close()
    assert [q["Symbol"] for q in recut] == [q["Symbol"] for q in direct]
    assert recut == direct  # the same objects, however the bytes were cut


def test_an_error_about_one_symbol_is_a_warning_and_the_rest_streams_on(session, emulator):
    emulator.break_next_stream("error", after=3, error="InvalidSymbol", symbol="SPY")
    with pytest.warns(UserWarning, match="TradeStation stream: SPY: InvalidSymbol"):
        items = take(session.iter_stream(QUOTES), 8)
    assert len(items) == 8 and not any("Error" in i for i in items)


def test_a_symbol_tradestation_does_not_know_is_a_warning_and_the_rest_streams_on(session):
    with pytest.warns(UserWarning, match="TradeStation stream: ÉTÉ: InvalidSymbol"):
        items = take(session.iter_stream("marketdata/stream/quotes/MSFT,ÉTÉ,AAPL"), 8)
    assert len(items) == 8 and {i["Symbol"] for i in items} == {"MSFT", "AAPL"}


def test_an_internal_error_in_the_stream_reopens_it_after_a_pause(session, emulator):
    emulator.break_next_stream("error", after=3, error="InternalServerError")
    started = time.monotonic()
    with session.iter_stream(QUOTES) as stream:
        items = take(stream, 8)
        assert stream.reconnects == 1
    assert len(items) == 8 and time.monotonic() - started >= 0.5  # backed off before reopening


def stream_calls(emulator) -> list[int]:
    """The statuses of the stream requests the emulator answered, in order."""
    return [c["status"] for c in emulator.api_calls if "/stream/" in c["path"]]


def test_a_persistent_503_costs_one_request_per_reconnection_not_the_sessions_retries_too(session, emulator):
    emulator.fail_next_api_request(503, times=100)
    with pytest.raises(StreamFailed, match="failed 3 times in a row") as caught:
        take(session.iter_stream(QUOTES, max_reconnects=2), 1)
    assert stream_calls(emulator) == [503] * 3  # the first open and two reconnections, nothing more
    assert "503" in str(caught.value)  # it says why


def test_a_rate_limited_stream_waits_as_the_reply_says_then_opens(session, emulator):
    emulator.rate_limit = (1, 2.0)
    take(session.iter_stream(QUOTES), 1)  # the window's one request
    assert len(take(session.iter_stream(QUOTES), 3)) == 3
    assert stream_calls(emulator) == [200, 429, 200]  # waited out Retry-After, not a short backoff


def test_a_retry_after_longer_than_the_sessions_budget_is_not_waited_out(session, signed_in, emulator):  # noqa: F811
    emulator.rate_limit = (1, 30.0)
    signed_in.snap = replace(signed_in.snap, retry_max_wait=2.0)  # shorter than the 30 s window
    take(session.iter_stream(QUOTES), 1)
    started = time.monotonic()
    with pytest.raises(StreamFailed, match="failed 2 times in a row"):
        take(session.iter_stream(QUOTES, max_reconnects=1), 1)
    assert time.monotonic() - started < 5 and stream_calls(emulator) == [200, 429, 429]


# -- what an attacker's review found ------------------------------------------------------------


def test_a_server_that_ends_every_stream_at_once_is_backed_off_then_given_up(session, emulator):
    emulator.configure_streams(goaway_after=0)  # every connection: GoAway before any data
    with pytest.raises(StreamFailed, match="failed 3 times in a row"):
        take(session.iter_stream(QUOTES, max_reconnects=2), 5)
    assert emulator.streams_opened <= 4  # not a busy loop of reconnections


def test_close_while_the_stream_is_connecting_ends_it(session, emulator):
    emulator.api_delay = 0.6  # the stream is still opening when close() comes ...
    emulator.break_next_stream("silent", after=0)  # ... and once open, it would say nothing
    stream = session.iter_stream(QUOTES)
    got: list = []
    reader = threading.Thread(target=lambda: got.extend(stream), daemon=True)
    reader.start()
    time.sleep(0.2)
    stream.close()
    reader.join(timeout=10)
    assert not reader.is_alive() and got == []
    eventually_sync(lambda: emulator.streams_open == 0, what="the stream let go")


def test_the_last_object_before_the_end_of_a_reply_is_not_lost():
    lines = JSONLines()
    assert lines.feed(b'{"a": 1}\n{"b": 2}') == [{"a": 1}]
    assert lines.close() == [{"b": 2}]


def test_a_malformed_line_is_skipped_with_a_warning_and_its_neighbours_kept():
    lines = JSONLines()
    with pytest.warns(UserWarning, match="skipped a line"):
        assert lines.feed(b'{"a": 1}\n{broken\n' + b"[" * 100_000 + b'\n{"b": 2}\n') == [{"a": 1}, {"b": 2}]


def test_a_line_that_never_ends_is_refused_not_buffered_forever():
    lines = JSONLines()
    with pytest.raises(ValueError, match="longer than"):
        for _ in range(40):
            lines.feed(b"x" * 1_000_000)


def test_a_stream_reply_whose_last_object_has_no_newline_still_gives_it(signed_in):  # noqa: F811
    from ...parts.fakes import CannedAPI

    api = CannedAPI({"/v3/marketdata/stream/quotes/MSFT": (200, b'{"Symbol": "MSFT", "Last": "1.00"}')})
    try:
        signed_in.snap = replace(signed_in.snap, api_url=f"{api.url}/v3", api_origins=(api.url,))
        items = take(TSSession(lambda: signed_in).iter_stream("marketdata/stream/quotes/MSFT"), 2)
    finally:
        api.close()
    assert items == [{"Symbol": "MSFT", "Last": "1.00"}] * 2  # one from each reply


class _CutByClose:
    """A reply whose read, once the stream is closed from another thread, fails as urllib3's
    does when the connection goes away under it (its file object set to None)."""

    status_code = 200

    def __init__(self) -> None:
        self.shut = threading.Event()
        self.raw = self

    def shutdown(self) -> None:
        self.shut.set()

    def close(self) -> None:
        self.shut.set()

    def iter_content(self, chunk_size=None):
        yield b'{"Symbol": "MSFT"}\n'
        self.shut.wait(10)
        raise AttributeError("'NoneType' object has no attribute 'read'")


def test_a_read_cut_short_by_close_ends_the_stream_quietly_whatever_urllib3_raises():
    from ts_notebook.kernel.streams import _Reader

    reader = _Reader(lambda silence: _CutByClose())
    items = reader.run()
    assert next(items) == {"Symbol": "MSFT"}
    threading.Timer(0.2, reader.close).start()
    assert list(items) == []  # ended, not "'NoneType' object has no attribute 'read'"

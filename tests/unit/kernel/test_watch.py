"""ts.watch against the emulator's quote stream: the table updates in place at a bounded rate,
Stop, closing the widget and ``seconds`` each end the stream and let go of it; the terminal
prints a line per update; bad input is one clear message."""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler

import pytest

from ts_notebook.errors import ConfigError
from ts_notebook.kernel import watch as watch_module
from ts_notebook.kernel.session import TSSession

from ...parts.fakes import serve_on_loopback
from ...parts.waiting import eventually_sync
from ..test_oauth import client  # noqa: F401 - the client fixture
from .test_session import signed_in  # noqa: F401 - the signed_in fixture


@pytest.fixture
def session(signed_in, emulator, monkeypatch):  # noqa: F811
    emulator.configure_streams(interval=0.01, heartbeat=5.0, goaway_after=None, rechunk_seed=5)
    monkeypatch.setattr(watch_module, "display", lambda widget: None)  # no frontend here
    monkeypatch.setattr(watch_module, "has_frontend", lambda: True)
    return TSSession(lambda: signed_in)


def prices(html: str) -> list[str]:
    return re.findall(r"<td class=\"ts-num[^\"]*\"[^>]*>(\d+\.\d\d)</td>", html)


def test_the_table_updates_in_place_no_faster_than_the_rate_then_stop_lets_go(session, emulator):
    live = watch_module.watch(session, ["MSFT", "AAPL"], rate=5.0)
    box = live.widget
    grid = box.children[0]
    eventually_sync(lambda: len(prices(grid.value)) >= 2, what="both symbols shown")
    started, before = time.monotonic(), live.updates
    time.sleep(1.0)
    shown = live.updates - before
    assert 2 <= shown <= 7, shown  # about 5 a second, though the stream sends 100

    stop = box.children[1].children[0]
    stop.click()
    eventually_sync(lambda: emulator.streams_open == 0, what="the stream let go")
    eventually_sync(lambda: stop.disabled, what="Stop greyed out")
    assert "Stopped" in box.children[1].children[1].value and time.monotonic() - started < 5


def test_closing_the_widget_stops_the_stream(session, emulator):
    box = watch_module.watch(session, "MSFT").widget
    eventually_sync(lambda: emulator.streams_open == 1, what="the stream opened")
    box.close()
    eventually_sync(lambda: emulator.streams_open == 0, what="the stream let go")


def test_seconds_stops_it_on_its_own(session, emulator):
    live = watch_module.watch(session, "MSFT", seconds=0.5)
    eventually_sync(lambda: live.stream.closed and emulator.streams_open == 0, what="stopped", timeout=5)


def test_a_refused_stream_is_said_in_the_widget_not_a_traceback(session, emulator):
    emulator.break_next_stream("error", after=2, error="DualLogon")
    box = watch_module.watch(session, "MSFT").widget
    status = box.children[1].children[1]
    eventually_sync(lambda: "DualLogon" in status.value, what="the error shown")
    assert "Stopped: TradeStation API: 200 DualLogon" in status.value


def test_the_terminal_prints_a_line_per_update_until_seconds(session, monkeypatch, capsys):
    monkeypatch.setattr(watch_module, "has_frontend", lambda: False)
    watch_module.watch(session, "MSFT,AAPL", seconds=1.5, rate=10)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "Stopped." and 2 <= len(lines) <= 1.5 * 10 + 5, lines  # at most `rate` lines a second
    assert re.fullmatch(r"MSFT \d+\.\d\d  AAPL (\d+\.\d\d|-)", lines[-2]), lines


def test_no_symbols_is_a_clear_message(session):
    with pytest.raises(ConfigError, match=r"Give at least one symbol, such as ts.watch\(\['MSFT', 'AAPL'\]\)"):
        watch_module.watch(session, " , ")


def test_numbers_are_right_aligned_times_in_exchange_time_and_changes_coloured_by_the_days_direction():
    rows = {
        "MSFT": {
            "Symbol": "MSFT",
            "Last": "410.50",
            "NetChange": "2.05",
            "Volume": "1234567",
            "TradeTime": "2026-07-01T19:59:58Z",  # summer: UTC-4
        },
        "AAPL": {"Symbol": "AAPL", "Last": "190.10", "NetChange": "-1.25", "TradeTime": "2026-11-27T21:00:00Z"},
        "SPY": {"Symbol": "SPY", "Last": "500.00", "NetChange": "0.00", "TradeTime": "soon"},
    }
    html = watch_module.table(rows, ["MSFT", "AAPL", "SPY"], ("Last", "NetChange", "Volume", "TradeTime"))
    msft, aapl, spy = re.findall(r"<tr>(.*?)</tr>", html.split("<tbody>")[1])

    last = re.search(r'<td class="ts-num ts-up" style="([^"]*)">410.50</td>', msft)
    assert last and {"padding:2px 10px", "text-align:right", "color:#1b7f3b"} <= set(last.group(1).split(";"))
    assert '<td class="ts-num ts-up"' in msft and ">2.05</td>" in msft and ">1,234,567</td>" in msft
    assert 'class="ts-num" ' in msft  # the volume: aligned, not coloured
    assert re.search(r'class="ts-num ts-down" style="[^"]*color:#c62828">-1.25</td>', aapl)
    assert ">15:59:58 ET</td>" in msft and ">16:00:00 ET</td>" in aapl  # EDT, then EST
    assert "ts-up" not in spy and "ts-down" not in spy and ">soon</td>" in spy
    assert all("text-align:right" in th for th in re.findall(r"<th [^>]*>", html)[1:])


def test_the_table_escapes_what_the_stream_sends():
    html = watch_module.table({"X": {"Symbol": "<b>X</b>", "Last": "<script>"}}, ["X"], ("Last",))
    assert "<script>" not in html and "<b>" not in html and "&lt;script&gt;" in html


def test_a_quote_that_came_between_two_renders_is_shown_without_waiting_for_the_next(session, emulator):
    emulator.configure_streams(interval=60.0, heartbeat=60.0)  # the snapshot, then nothing for a minute
    live = watch_module.watch(session, ["MSFT", "AAPL", "SPY"], rate=1.0)
    grid = live.widget.children[0]
    # The first quote renders at once; the two right behind it within the next second.
    eventually_sync(lambda: len(prices(grid.value)) >= 3 * 3, what="every symbol shown", timeout=5)
    live.stop()


def hostile_stream_handler(quote: dict):
    """A quote stream that sends a good quote, then (within the watch's render interval, so a
    timer thread renders it) one whose field the table cannot format, then stays open."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # chunked, as TradeStation streams

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.tradestation.streams.v2+json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for sent in ({"Symbol": "MSFT", "Last": "420.00", "NetChange": "1.50"}, quote):
                line = json.dumps(sent).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
                time.sleep(0.05)
            time.sleep(30)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.mark.parametrize(
    "quote",
    [
        {"Symbol": "MSFT", "TradeTime": "0001-01-01T00:00:00+14:00"},
        {"Symbol": "MSFT", "Volume": "9" * 400},
        {"Symbol": "MSFT", "NetChange": None},
    ],
    ids=["trade-time-out-of-range", "huge-volume", "null-netchange"],
)
def test_a_quote_field_the_table_cannot_format_is_shown_as_it_came_and_no_thread_dies(
    signed_in,  # noqa: F811 - the fixture
    monkeypatch,
    quote,
):
    httpd = serve_on_loopback(hostile_stream_handler(quote))
    origin = f"http://127.0.0.1:{httpd.server_port}"
    signed_in.snap = replace(signed_in.snap, api_url=f"{origin}/v3", api_origins=(origin,))
    monkeypatch.setattr(watch_module, "display", lambda widget: None)
    monkeypatch.setattr(watch_module, "has_frontend", lambda: True)
    crashed: list[str] = []  # what a thread's death prints, in a kernel, under whichever cell runs then
    monkeypatch.setattr(threading, "excepthook", lambda args: crashed.append(f"{args.thread.name}: {args.exc_value!r}"))
    try:
        live = watch_module.watch(TSSession(lambda: signed_in), "MSFT", rate=4.0)
        time.sleep(2)
        error, shown = live.error, live.widget.children[0].value
        live.stop()
        eventually_sync(lambda: live.widget.children[1].children[0].disabled, timeout=10, what="the watch ended")
    finally:
        httpd.shutdown()

    assert not crashed, f"a watch thread died: {crashed}"
    assert error is None, f"one odd value ended the watch: Stopped: {error}"
    assert "420.00" in shown

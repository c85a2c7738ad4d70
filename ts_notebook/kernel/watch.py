"""``ts.watch(symbols)``: live quotes from the quote stream.

In a notebook: a table (ipywidgets) that updates in place at most ``rate`` times a second,
with a Stop button; a background thread reads the stream, so the notebook stays usable. The
stream stops on Stop, when the widget is closed, after ``seconds``, or when the kernel shuts
down (the thread is a daemon, and its connection goes with the process). In a terminal (or with
``block=True``): one compact line per update, until ``seconds`` pass or Ctrl-C.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from ..frames import EXCHANGE_TZ
from ..symbols import symbols_of
from .frontend import display, has_frontend
from .streams import Stream

FIELDS = ("Last", "Bid", "Ask", "NetChange", "Volume", "TradeTime")
# Coloured green when the day's change (NetChange) is up, red when down: the rule of a quote
# board, steady between ticks (a tick-by-tick rule would flicker).
COLOURED = ("Last", "NetChange", "NetChangePct")
COLOURS = {"up": "#1b7f3b", "down": "#c62828"}
CELL = "padding:2px 10px;"
RIGHT = "text-align:right;font-variant-numeric:tabular-nums;"


def exchange_time(value: str) -> str:
    """``2026-11-27T20:59:58Z`` as the exchange's clock shows it: ``15:59:58 ET`` (anything
    that is not such a time is shown as it came)."""
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if when.tzinfo is None:  # no zone given: not a time that can be converted
            return value
        return f"{when.astimezone(ZoneInfo(EXCHANGE_TZ)):%H:%M:%S} ET"
    except (ValueError, OverflowError):  # not a time, or one no clock shows (year 1 at +14:00)
        return value


def number(value: str) -> str | None:
    """A price or a count as shown (a count with thousands separators); None if not a number."""
    try:
        figure = float(value)
        return f"{int(figure):,}" if value.strip().lstrip("+-").isdigit() else value
    except (ValueError, OverflowError):  # not a number, or a count past any float (inf)
        return None


def direction(row: dict[str, Any]) -> str | None:
    """``up`` or ``down`` as the day's change (NetChange) says; None when flat or unknown."""
    try:
        change = float(row.get("NetChange") or "")
    except (ValueError, TypeError):
        return None
    return "up" if change > 0 else "down" if change < 0 else None


def cell(row: dict[str, Any], name: str) -> str:
    """One field of a row as a table cell: numbers right-aligned, times in exchange time,
    the price and its change coloured by the day's direction."""
    raw = str(row.get(name, ""))
    if name == "Symbol":
        return f'<td style="{CELL}font-weight:600">{escape(raw)}</td>'
    if name.endswith("Time"):
        return f'<td class="ts-time" style="{CELL}{RIGHT}">{escape(exchange_time(raw))}</td>'
    shown = number(raw)
    if shown is None:
        return f'<td style="{CELL}">{escape(raw)}</td>'
    way = direction(row) if name in COLOURED else None
    if way is None:
        return f'<td class="ts-num" style="{CELL}{RIGHT}">{escape(shown)}</td>'
    return f'<td class="ts-num ts-{way}" style="{CELL}{RIGHT}color:{COLOURS[way]}">{escape(shown)}</td>'


def table(rows: dict[str, dict[str, Any]], symbols: list[str], fields: Sequence[str]) -> str:
    """The quotes as an HTML table, one row per symbol in the order asked (escaped)."""
    head = "".join(f'<th style="{CELL}{"" if f == "Symbol" else RIGHT}">{escape(f)}</th>' for f in ("Symbol", *fields))
    body = "".join("<tr>" + "".join(cell(rows.get(s, {}), f) for f in ("Symbol", *fields)) + "</tr>" for s in symbols)
    return f'<table class="ts-notebook-watch"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


class Watch:
    """One live watch: its stream, the latest quote per symbol, and how many updates were shown."""

    def __init__(
        self, stream: Stream, symbols: list[str], fields: Sequence[str], rate: float, seconds: float | None
    ) -> None:
        self.stream, self.symbols, self.fields = stream, symbols, tuple(fields)
        self.interval = 1.0 / max(rate, 0.1)
        self.deadline = time.monotonic() + seconds if seconds else None
        self.rows: dict[str, dict[str, Any]] = {s: {"Symbol": s} for s in symbols}
        self.updates = 0  # renders shown
        self.error: str | None = None
        self.widget: Any = None  # the table, in a notebook
        self._lock = threading.RLock()  # the rows and the render state: the reader and a timer share them
        self._show: Any = None
        self._last, self._dirty = 0.0, False
        self._pending: threading.Timer | None = None

    def _ipython_display_(self) -> None:
        """Nothing more to show: the table was shown when the watch started (this keeps the
        cell's result from showing it a second time)."""

    def stop(self) -> None:
        """End the stream (from any thread)."""
        self.stream.close()

    def run(self, show: Any) -> None:
        """Read the stream; ``show()`` the rows at most once per interval, and always within one
        interval of a change (a timer renders what arrived just after a render)."""
        timer = threading.Timer(max(0.0, self.deadline - time.monotonic()), self.stop) if self.deadline else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        self._show, self._last, self._dirty, self._pending = show, 0.0, False, None
        try:
            for quote in self.stream:
                symbol = quote.get("Symbol")
                if symbol in self.rows:
                    with self._lock:
                        self.rows[symbol].update(quote)
                        self._dirty = True
                    self._render_soon()
        except Exception as exc:  # said in the widget or the terminal, never a traceback in a thread
            self.error = str(exc)
        finally:
            if timer is not None:
                timer.cancel()
            self.stream.close()
            with self._lock:
                if self._pending is not None:
                    self._pending.cancel()
            self._render()

    def _render_soon(self) -> None:
        with self._lock:
            wait = self.interval - (time.monotonic() - self._last)
            if wait > 0:
                if self._pending is None:  # one render is already due: it will show this too
                    self._pending = threading.Timer(wait, self._render)
                    self._pending.daemon = True
                    self._pending.start()
                return
        self._render()

    def _render(self) -> None:
        with self._lock:
            self._pending = None
            if not self._dirty:
                return
            self._dirty, self._last = False, time.monotonic()
            self.updates += 1
            self._show()


def watch_widget(watch: Watch) -> Any:
    """The notebook view: a table, a status line and Stop; returns the widget."""
    from ipywidgets import HTML, Button, HBox, VBox

    grid = HTML(table(watch.rows, watch.symbols, watch.fields))
    status = HTML("<span>Streaming…</span>")
    stop = Button(description="Stop", button_style="warning")

    class WatchBox(VBox):
        def close(self) -> None:  # the widget closed (cell cleared, notebook closed): stop streaming
            watch.stop()
            super().close()

    box = WatchBox([grid, HBox([stop, status])])
    watch.widget = box
    stop.on_click(lambda _: watch.stop())

    def show() -> None:
        grid.value = table(watch.rows, watch.symbols, watch.fields)

    def run() -> None:
        watch.run(show)
        status.value = f"<span>Stopped{': ' + escape(watch.error) if watch.error else ''}.</span>"
        stop.disabled = True

    threading.Thread(target=run, name="ts_notebook-watch", daemon=True).start()
    return box


def watch_terminal(watch: Watch) -> None:
    """The terminal view: one compact line per update until ``seconds`` or Ctrl-C."""

    def show() -> None:
        print("  ".join(f"{s} {watch.rows[s].get('Last', '-')}" for s in watch.symbols), flush=True)

    try:
        watch.run(show)
    except KeyboardInterrupt:
        watch.stop()
    print(f"Stopped{': ' + watch.error if watch.error else ''}.")


def watch(
    session: Any,
    symbols: str | Sequence[str],
    seconds: float | None = None,
    fields: Sequence[str] = FIELDS,
    rate: float = 4.0,
    block: bool | None = None,
) -> Any:
    """Live quotes of ``symbols``: a table in a notebook, lines in a terminal.

    Args:
        session: the ``ts.session`` to stream through.
        seconds: stop after this long (default: until Stop, or Ctrl-C in a terminal).
        fields: the quote fields shown.
        rate: at most this many updates of the view per second.
        block: run in the foreground (default: only in a terminal).

    Returns:
        In a notebook, the running :class:`Watch` (``.stop()``, ``.updates``, ``.widget``).
    """
    names = symbols_of(symbols, "ts.watch")
    stream = session.iter_stream(f"marketdata/stream/quotes/{','.join(names)}")
    live = Watch(stream, names, fields, rate, seconds)
    if block if block is not None else not has_frontend():
        watch_terminal(live)
        return None
    display(watch_widget(live))
    return live

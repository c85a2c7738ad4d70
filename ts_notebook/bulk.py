"""``ts.download``: bars of many symbols at once, in a frame whose shape never depends on how many.

Workers (a bounded pool) fetch each symbol's bars through ``ts.session``, so renewal and its
retries apply to every request. TradeStation's quotas are per user and resource: a 429 seen by
any worker pauses every worker until the reset its headers give (:class:`Pause`), then all
resume. Nothing is held back ahead of a 429 (TradeStation asks clients not to throttle on their
own). A symbol TradeStation refuses (an unknown one) is reported at once; one whose requests
keep failing is tried :data:`TRIES` times with a backoff, then reported; neither loses the
others, and no part of a symbol's bars is ever dropped silently (a symbol is whole, or
reported). Reported symbols are named in a warning and in the frame's ``attrs["errors"]``.

Shapes (fixed, whatever the number of symbols): ``layout="wide"`` columns are a MultiIndex
(field, symbol), as yfinance's are, over one time index; ``layout="long"`` rows are indexed by
(symbol, time), one per symbol and bar.

With ``cache=True`` (the default) closed bars are kept (:mod:`ts_notebook.barcache`) and a rerun
asks only for what is missing: for a ``start`` (to ``end``, or now), the spans of time the
cache does not hold; for ``barsback`` bars ending now, the tail since the last bar held (that
bar included, so a revision of it replaces it). ``barsback`` with an ``end`` is always asked.
``ts.bars`` is a download of one symbol, through :func:`one`.
"""

from __future__ import annotations

import re
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any

import requests

from . import frames
from .backoff import delay as backoff_delay
from .barcache import BarCache, Key, epoch_of
from .errors import TSError

if TYPE_CHECKING:
    import pandas as pd

# Workers at once (a pool, not a thread per symbol), and the most a caller may ask for.
THREADS, MAX_THREADS = 8, 32
# Tries of one symbol whose requests fail (after ts.session's own retries), waiting FAILURE_FIRST
# seconds, doubling, at most FAILURE_MOST, between them. 429s are not failures: each waits the
# reset, at most PAUSES times for one symbol.
TRIES, FAILURE_FIRST, FAILURE_MOST = 3, 1.0, 8.0
PAUSES = 30
# A 429 whose headers name no wait pauses this long, doubling, at most PAUSE_MOST.
PAUSE_FIRST, PAUSE_MOST = 1.0, 60.0
LAYOUTS = ("wide", "long")
SEPARATORS = re.compile(r"[\s,]+")


class Pause:
    """One rate limit for a whole download: when any worker's request is answered 429, every
    worker waits until the reset its headers give before it sends again.

    Args:
        told: called with the seconds left whenever a pause starts (a progress bar says so).
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        told: Callable[[float], None] | None = None,
    ) -> None:
        self.clock, self.sleep, self.told = clock, sleep, told
        self._lock = threading.Lock()
        self._until = 0.0
        self._in_a_row = 0
        self.pauses = 0  # 429s seen
        self.waited = 0.0  # seconds workers spent waiting, all together

    def saw(self, resp: requests.Response, *args: Any, **kwargs: Any) -> None:
        """A reply arrived (a requests response hook: the session's own retries' replies too)."""
        if resp.status_code != 429:
            with self._lock:
                self._in_a_row = 0
            return
        from .kernel.replies import retry_wait

        with self._lock:
            self._in_a_row += 1
            self.pauses += 1
            wait = retry_wait(resp) or backoff_delay(self._in_a_row, PAUSE_FIRST, PAUSE_MOST)
            until = self.clock() + wait
            started = until > self._until
            self._until = max(self._until, until)
        if started and self.told is not None:
            self.told(wait)

    def wait(self) -> None:
        """Return once no pause is on (at once when none is)."""
        while True:
            with self._lock:
                left = self._until - self.clock()
            if left <= 0:
                return
            self.sleep(left)
            with self._lock:
                self.waited += left


class _Gated:
    """``ts.session`` as one worker uses it: each request waits out the pause first, and every
    reply is shown to the pause."""

    def __init__(self, session: requests.Session, pause: Pause) -> None:
        self._session, self._pause = session, pause

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        self._pause.wait()
        return self._session.get(url, hooks={"response": [self._pause.saw]}, **kwargs)


def symbols_of(symbols: str | Iterable[str]) -> list[str]:
    """The symbols asked for, in order, each once: ``"MSFT AAPL"``, ``"MSFT,AAPL"`` or a list.

    Raises:
        TSError: none, or one that is not text.
    """
    given = SEPARATORS.split(symbols) if isinstance(symbols, str) else list(symbols)
    if not all(isinstance(s, str) for s in given):
        raise TSError("Give symbols as text: ts.download(['MSFT', 'AAPL']) or ts.download('MSFT AAPL').")
    wanted = list(dict.fromkeys(s.strip() for s in given if s.strip()))
    if not wanted:
        raise TSError("Give at least one symbol: ts.download(['MSFT', 'AAPL']).")
    return wanted


def _refusal(exc: Exception, symbol: str) -> str | None:
    """Why TradeStation refused ``symbol`` itself (its own 400 or 404 naming it), else None."""
    from .kernel.replies import APIError

    if isinstance(exc, APIError) and exc.status in (400, 404) and symbol.lower() in (exc.message or "").lower():
        return f"{exc.error}: {exc.message}"
    return None


def _fetch(get: Callable[[], pd.DataFrame], symbol: str, sleep: Callable[[float], None]) -> pd.DataFrame | str:
    """One symbol's bars, or why there are none (refused, or failing every try). An error that
    is no one symbol's (a bad parameter, a missing scope, signed out) is raised."""
    from .kernel.replies import APIError

    failures = pauses = 0
    while True:
        try:
            return get()
        except APIError as exc:
            refused = _refusal(exc, symbol)
            if refused:
                return refused
            if exc.status == 429:
                pauses += 1
                if pauses > PAUSES:
                    return f"still rate limited after {PAUSES} waits for the reset"
                continue  # the pause holds every worker until the reset; then this one asks again
            if exc.status < 500:
                raise  # every symbol would get it: the message says what to fix
            reason = f"{exc.status} {exc.error}"
        except (requests.ConnectionError, requests.Timeout) as exc:
            reason = type(exc).__name__
        failures += 1
        if failures >= TRIES:
            return f"failed {TRIES} times (last: {reason})"
        sleep(backoff_delay(failures, FAILURE_FIRST, FAILURE_MOST))


class _Rows:
    """What the bar requests brought, as TradeStation sent it."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def __call__(self, rows: list[dict[str, Any]]) -> None:
        self.rows += rows

    def closed_until(self) -> int | None:
        closed = [epoch_of(r["TimeStamp"]) for r in self.rows if r.get("BarStatus", "Closed") == "Closed"]
        return max(closed) if closed else None

    def open(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r.get("BarStatus", "Closed") != "Closed"]


def _epoch(pd: Any, when: Any, end_of_day: bool) -> int:
    """``when`` as the API reads it (naive: exchange time; a date alone: its start, or its end)."""
    stamp = pd.Timestamp(when)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize(frames.EXCHANGE_TZ)
    if end_of_day and isinstance(when, str) and len(when.strip()) <= 10:
        stamp = stamp + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
    return int(stamp.timestamp() * 1000)


def _gaps(spans: list[tuple[int, int]], first: int, last: int | None) -> list[tuple[int, int | None]]:
    """The parts of ``first`` .. ``last`` (None: now) no span covers."""
    gaps, at = [], first
    for a, b in spans:
        if last is not None and a > last:
            break
        if b < at:
            continue
        if a > at:
            gaps.append((at, a - 1))
        at = max(at, b + 1)
    if last is None or at <= last:
        gaps.append((at, last))
    return gaps


def one(
    session: Any,
    symbol: str,
    interval: int = 1,
    unit: str = "Daily",
    barsback: int | None = None,
    start: Any = None,
    end: Any = None,
    sessiontemplate: str | None = None,
    cache: BarCache | None = None,
) -> pd.DataFrame:
    """One symbol's bars (:func:`ts_notebook.frames.bars`), through ``cache`` when given."""
    pd = frames._pandas()
    intraday = unit == "Minute"
    if cache is None or (end is not None and start is None):
        return frames.bars(session, symbol, interval, unit, barsback, start, end, sessiontemplate)
    key = Key(symbol, unit, interval, sessiontemplate or "Default")

    def fetch(count: int | None, since: int | None, until: int | None) -> _Rows:
        got = _Rows()
        stamps = [
            None if t is None else frames._when(pd.Timestamp(t, unit="ms", tz="UTC").to_pydatetime())
            for t in (since, until)
        ]
        frames._bars(session, symbol, interval, unit, count, stamps[0], stamps[1], sessiontemplate, keep=got)
        return got

    if start is not None:  # a range: ask only for the spans the cache does not hold
        first, last = _epoch(pd, start, False), None if end is None else _epoch(pd, end, True)
        latest: _Rows | None = None
        now = int(time.time() * 1000)
        for a, b in _gaps(cache.spans(key), first, last):
            latest = fetch(None, a, b)
            closed = latest.closed_until()
            whole = b is not None and b < now and not latest.open()  # every bar of the gap is closed
            cache.keep(key, latest.rows, a, b if whole else closed)
        return _joined(pd, cache.frame(key, intraday, first, last), latest.open() if latest and last is None else [])
    wanted = barsback or 1
    spans = cache.spans(key)
    if spans:  # barsback ending now: the tail since the last bar held, that bar included
        held_from, held_to = spans[-1]
        tail = fetch(None, held_to, None)
        cache.keep(key, tail.rows, held_to, tail.closed_until())
        opened = tail.open()
        held = cache.frame(key, intraday, held_from, newest=max(wanted - len(opened), 1))
        if len(held) + len(opened) >= wanted:
            return _joined(pd, held, opened).iloc[-wanted:]
    got = fetch(wanted, None, None)
    closed = [epoch_of(r["TimeStamp"]) for r in got.rows if r.get("BarStatus", "Closed") == "Closed"]
    cache.keep(key, got.rows, min(closed) if closed else None, max(closed) if closed else None)
    return frames.bar_frame(got.rows, intraday).iloc[-wanted:]


def _joined(pd: Any, held: pd.DataFrame, opened: list[dict[str, Any]]) -> pd.DataFrame:
    """Bars kept, then the bars still being built (fetched, never kept)."""
    if not opened:
        return held
    fresh = frames.bar_frame(opened, held.index.name == "Datetime")
    return pd.concat([held, fresh]) if len(held) else fresh


def _held(
    pd: Any,
    cache: BarCache | None,
    symbols: list[str],
    interval: int,
    unit: str,
    start: Any,
    end: Any,
    template: str | None,
) -> dict[str, pd.DataFrame]:
    """The symbols of a past range the cache holds whole, read at once (no request for them)."""
    if cache is None or start is None or end is None:
        return {}
    first, last = _epoch(pd, start, False), _epoch(pd, end, True)
    keys = [Key(s, unit, interval, template or "Default") for s in symbols]
    return cache.frames([k for k in keys if cache.covered(k, first, last)], unit == "Minute", first, last)


def cache_for(session: Any) -> BarCache | None:
    """The bar cache of ``session``'s sign-in (its API and TradeStation user), or None when
    the sign-in says no user."""
    subject = getattr(session, "subject", None)
    if not subject:
        return None
    return BarCache.for_sign_in(session.base_url, subject)


class CacheView:
    """``ts.cache``: the bars this sign-in keeps on this machine."""

    def __init__(self, session: Callable[[], Any]) -> None:
        self._session = session

    def _cache(self) -> BarCache:
        cache = cache_for(self._session())
        if cache is None:
            raise TSError("Sign in first (%ts_login): the bar cache is kept per TradeStation sign-in.")
        return cache

    def info(self) -> pd.DataFrame:
        """What is kept: one row per symbol, unit, interval and session template, with how many
        bars and the first and last; ``attrs["bytes"]`` and ``attrs["path"]`` say its size and where."""
        pd = frames._pandas()
        cache = self._cache()
        try:
            frame = pd.DataFrame(
                cache.info(), columns=["Symbol", "Unit", "Interval", "SessionTemplate", "Bars", "First", "Last"]
            )
            frame.attrs.update(bytes=cache.size(), path=str(cache.path))
        finally:
            cache.close()
        return frame

    def clear(self, symbol: str | None = None) -> int:
        """Forget the bars kept of ``symbol`` (None: all of them); returns how many."""
        cache = self._cache()
        try:
            return cache.clear(symbol)
        finally:
            cache.close()

    def __repr__(self) -> str:
        return "ts.cache: the bars this sign-in keeps (ts.cache.info(), ts.cache.clear(symbol=None))"


def download(
    session: requests.Session,
    symbols: str | Iterable[str],
    interval: int = 1,
    unit: str = "Daily",
    start: Any = None,
    end: Any = None,
    barsback: int | None = None,
    sessiontemplate: str | None = None,
    threads: int = THREADS,
    progress: bool = True,
    layout: str = "wide",
    cache: bool = True,
) -> pd.DataFrame:
    """Bars of every symbol in ``symbols``, fetched ``threads`` at a time, as one frame (see the
    module's docstring for its shapes, the rate limit, the cache and what is reported).

    Raises:
        TSError: no symbols, or a ``threads`` or ``layout`` that cannot be used.
        APIError: a refusal that is no one symbol's (a bad parameter, a missing scope).
    """
    pd = frames._pandas()
    wanted = symbols_of(symbols)
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise TSError(f"threads must be a whole number from 1 to {MAX_THREADS}, not {threads!r}.")
    if layout not in LAYOUTS:
        raise TSError(f"layout must be 'wide' (columns: field, symbol) or 'long' (rows: symbol, time), not {layout!r}.")
    kept = cache_for(session) if cache else None
    bar = _progress(len(wanted), progress)
    pause = Pause(told=lambda wait: bar.set_description(f"waiting {wait:.0f} s for the rate limit"))
    gated = _Gated(session, pause)

    def each(symbol: str) -> pd.DataFrame | str:
        def get() -> pd.DataFrame:
            return one(gated, symbol, interval, unit, barsback, start, end, sessiontemplate, kept)

        return _fetch(get, symbol, time.sleep)

    got: dict[str, pd.DataFrame] = _held(pd, kept, wanted, interval, unit, start, end, sessiontemplate)
    errors: dict[str, str] = {}
    received = sum(len(f) for f in got.values())
    asked = [s for s in wanted if s not in got]
    bar.update(len(got))
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(threads, len(asked))), thread_name_prefix="ts_download") as pool:
            futures = {pool.submit(each, s): s for s in asked}
            try:
                for future in as_completed(futures):
                    symbol, result = futures[future], future.result()
                    if isinstance(result, str):
                        errors[symbol] = result
                    else:
                        got[symbol] = result
                        received += len(result)
                    bar.set_description("")
                    bar.set_postfix_str(f"{received:,} bars" + (f", {len(errors)} failed" if errors else ""))
                    bar.update()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    finally:
        bar.close()
        if kept is not None:
            kept.close()
    if errors:
        listed = "; ".join(f"{s}: {why}" for s, why in errors.items())
        warnings.warn(f"ts.download: no bars for {len(errors)} of {len(wanted)} symbols ({listed})", stacklevel=3)
    frame = _assemble(pd, [s for s in wanted if s in got], got, unit == "Minute", layout)
    frame.attrs["errors"] = {s: errors[s] for s in wanted if s in errors}
    return frame


def _assemble(pd: Any, order: list[str], got: dict[str, pd.DataFrame], intraday: bool, layout: str) -> pd.DataFrame:
    """The symbols' frames as one, in the order asked for."""
    time_name = "Datetime" if intraday else "Date"
    fields = list(dict.fromkeys(c for s in order for c in got[s].columns)) or [*frames.PRICE_COLUMNS, "Volume"]
    if layout == "long":
        if not order:
            index = pd.MultiIndex.from_arrays(
                [[], pd.DatetimeIndex([], tz=frames.EXCHANGE_TZ)], names=["Symbol", time_name]
            )
            return pd.DataFrame(index=index, columns=fields)
        return pd.concat([got[s] for s in order], keys=order, names=["Symbol", time_name]).reindex(columns=fields)
    columns = pd.MultiIndex.from_product([fields, order], names=["Field", "Symbol"])
    if not order:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz=frames.EXCHANGE_TZ, name=time_name), columns=columns)
    wide = pd.concat([got[s] for s in order], axis=1, keys=order, names=["Symbol", "Field"])
    return wide.swaplevel(axis=1).reindex(columns=columns).rename_axis(time_name)


class _Silent:
    def set_description(self, text: str) -> None: ...
    def set_postfix_str(self, text: str) -> None: ...
    def update(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, shown: bool) -> Any:
    """A progress bar of symbols done: tqdm's notebook bar in a notebook, text in a terminal."""
    if not shown:
        return _Silent()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # (the pandas extra brings it)
        return _Silent()
    return tqdm(total=total, unit="symbol", desc="", leave=True)

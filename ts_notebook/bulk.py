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

import threading
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any

import requests

from . import frames, mapped
from .assembly import LAYOUTS, assembled
from .backoff import delay as backoff_delay
from .barcache import BarCache, Damaged, Key, closed
from .errors import TSError
from .symbols import symbols_of

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
        # A request's hooks take the place of the session's in requests: the session's go first.
        hooks = [*self._session.hooks.get("response", []), self._pause.saw]
        return self._session.get(url, hooks={"response": hooks}, **kwargs)


def _refusal(exc: Exception, symbol: str) -> str | None:
    """Why TradeStation refused ``symbol`` itself (its own 400 or 404 naming it), else None."""
    from .kernel.replies import APIError

    if isinstance(exc, APIError) and exc.status in (400, 404) and symbol.lower() in (exc.message or "").lower():
        return f"{exc.error}: {exc.message}"
    return None


def _fetch(get: Callable[[], frames.Bars], symbol: str, sleep: Callable[[float], None]) -> frames.Bars | str:
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
        except (requests.ConnectionError, requests.Timeout, frames.ReplyCut) as exc:
            reason = type(exc).__name__
        failures += 1
        if failures >= TRIES:
            return f"failed {TRIES} times (last: {reason})"
        sleep(backoff_delay(failures, FAILURE_FIRST, FAILURE_MOST))


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
) -> frames.Bars:
    """One symbol's bars (:func:`ts_notebook.frames.bars_of`), through ``cache`` when given."""
    if cache is None or (end is not None and start is None):
        return frames.bars_of(session, symbol, interval, unit, barsback, start, end, sessiontemplate)
    asked = (session, symbol, interval, unit, barsback, start, end, sessiontemplate)
    for _ in range(2):  # a store that could not be read is forgotten (and said): asked whole, kept again
        try:
            return frames.Bars.of(_through(cache, *asked))
        except Damaged:
            pass
    return frames.bars_of(*asked)  # (it could not be kept either: asked, not kept)


def _through(
    cache: BarCache,
    session: Any,
    symbol: str,
    interval: int,
    unit: str,
    barsback: int | None,
    start: Any,
    end: Any,
    sessiontemplate: str | None,
) -> pd.DataFrame:
    """One symbol's bars as a frame: what ``cache`` holds, and only what it lacks asked for."""
    pd = frames._pandas()
    intraday = unit == "Minute"
    key = Key(symbol, unit, interval, sessiontemplate or "Default")

    def fetch(count: int | None, since: int | None, until: int | None) -> pd.DataFrame:
        stamps = [
            None if t is None else frames._when(pd.Timestamp(t, unit="ms", tz="UTC").to_pydatetime())
            for t in (since, until)
        ]
        return frames.bars(session, symbol, interval, unit, count, stamps[0], stamps[1], sessiontemplate)

    if start is not None:  # a range: ask only for the spans the cache does not hold
        first, last = _epoch(pd, start, False), None if end is None else _epoch(pd, end, True)
        latest = None
        now = int(time.time() * 1000)
        for a, b in _gaps(cache.spans(key), first, last):
            latest = fetch(None, a, b)
            shut = closed(latest)
            whole = b is not None and b < now and shut.all()  # every bar of the gap is closed
            cache.keep(key, latest, a, b if whole else _last(latest[shut]))
        opened = latest[~closed(latest)] if latest is not None and last is None else None
        return _joined(pd, cache.frame(key, intraday, first, last), opened)
    wanted = barsback or 1
    spans = cache.spans(key)
    if spans:  # barsback ending now: the tail since the last bar held, that bar included
        held_from, held_to = spans[-1]
        tail = fetch(None, held_to, None)
        shut = closed(tail)
        cache.keep(key, tail, held_to, _last(tail[shut]))
        opened = tail[~shut]
        held = cache.frame(key, intraday, held_from, newest=max(wanted - len(opened), 1))
        if len(held) + len(opened) >= wanted:
            return _joined(pd, held, opened).iloc[-wanted:]
    got = fetch(wanted, None, None)
    kept = got[closed(got)]
    cache.keep(key, got, _last(kept.iloc[:1]), _last(kept))
    return got.iloc[-wanted:]


def _last(frame: pd.DataFrame) -> int | None:
    """The time of ``frame``'s last bar (epoch ms), or None for no bar."""
    return int(frame.index[-1:].as_unit("ms").asi8[0]) if len(frame) else None


def _joined(pd: Any, held: pd.DataFrame, opened: pd.DataFrame | None) -> pd.DataFrame:
    """Bars kept, then the bars still being built (fetched, never kept)."""
    if opened is None or not len(opened):
        return held
    return pd.concat([held, opened]) if len(held) else opened


def _held(
    pd: Any,
    cache: BarCache | None,
    symbols: list[str],
    interval: int,
    unit: str,
    start: Any,
    end: Any,
    template: str | None,
) -> dict[str, frames.Bars]:
    """The symbols of a past range the cache holds whole, read at once (no request for them)."""
    if cache is None or start is None or end is None:
        return {}
    first, last = _epoch(pd, start, False), _epoch(pd, end, True)
    keys = cache.covering([Key(s, unit, interval, template or "Default") for s in symbols], first, last)
    if not keys:
        return {}
    held = cache.bars(keys, unit == "Minute", first, last)
    # Held whole with no bar in that range, or forgotten as it could not be read (then asked).
    empty = cache.covering([k for k in keys if k.symbol not in held], first, last)
    return {**held, **{k.symbol: frames.bar_columns_of([], unit == "Minute") for k in empty}}


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
    wanted = symbols_of(symbols, "ts.download")
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise TSError(f"threads must be a whole number from 1 to {MAX_THREADS}, not {threads!r}.")
    if layout not in LAYOUTS:
        raise TSError(f"layout must be 'wide' (columns: field, symbol) or 'long' (rows: symbol, time), not {layout!r}.")
    kept = cache_for(session) if cache else None
    bar = _progress(len(wanted), progress)
    pause = Pause(told=lambda wait: bar.set_description(f"waiting {wait:.0f} s for the rate limit"))
    gated = _Gated(session, pause)
    # Each symbol's bars as columns (the frame's own views), placed in the one frame at the end;
    # the workers' futures hold none of them, so each is let go once placed.
    got: dict[str, frames.Bars] = {}
    errors: dict[str, str] = {}

    def each(symbol: str) -> str | None:
        def get() -> frames.Bars:
            return one(gated, symbol, interval, unit, barsback, start, end, sessiontemplate, kept)

        result = _fetch(get, symbol, time.sleep)
        if isinstance(result, str):
            return result
        got[symbol] = frames.Bars(result.index, mapped.moved(result.columns))  # (given back once placed)
        return None

    received = 0

    def counted(bars: int) -> None:
        nonlocal received
        received += bars
        bar.set_postfix_str(f"{received:,} bars" + (f", {len(errors)} failed" if errors else ""))

    try:
        got.update(_held(pd, kept, wanted, interval, unit, start, end, sessiontemplate))
        asked = [s for s in wanted if s not in got]
        if got:  # served by the cache: done already
            counted(sum(len(b.index) for b in got.values()))
            bar.update(len(got))
        with ThreadPoolExecutor(max_workers=max(1, min(threads, len(asked))), thread_name_prefix="ts_download") as pool:
            futures = {pool.submit(each, s): s for s in asked}
            try:
                for future in as_completed(futures):
                    symbol, why = futures[future], future.result()
                    if why is not None:
                        errors[symbol] = why
                    bar.set_description("")
                    counted(0 if why is not None else len(got[symbol].index))
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
    frame = assembled(pd, [s for s in wanted if s in got], got, unit == "Minute", layout)
    frame.attrs["errors"] = {s: errors[s] for s in wanted if s in errors}
    return frame


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

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
) -> pd.DataFrame:
    """Bars of every symbol in ``symbols``, fetched ``threads`` at a time, as one frame (see the
    module's docstring for its shapes, the rate limit and what is reported).

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
    bar = _progress(len(wanted), progress)
    pause = Pause(told=lambda wait: bar.set_description(f"waiting {wait:.0f} s for the rate limit"))
    gated = _Gated(session, pause)

    def one(symbol: str) -> pd.DataFrame | str:
        def get() -> pd.DataFrame:
            return frames.bars(gated, symbol, interval, unit, barsback, start, end, sessiontemplate)  # type: ignore[arg-type]

        return _fetch(get, symbol, time.sleep)

    got: dict[str, pd.DataFrame] = {}
    errors: dict[str, str] = {}
    received = 0
    try:
        with ThreadPoolExecutor(max_workers=min(threads, len(wanted)), thread_name_prefix="ts_download") as pool:
            futures = {pool.submit(one, s): s for s in wanted}
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
    def update(self) -> None: ...
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

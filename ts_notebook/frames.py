"""TradeStation's replies as pandas DataFrames: bars, quotes, accounts, balances, positions, orders.

Needs the ``pandas`` extra (``pip install 'ts_notebook[pandas]'``); it is imported on first use,
never by ``import ts_notebook``. Conversion is column-wise (vectorised): 57,600 bars are one
``DataFrame`` built once, not a loop over rows. Prices arrive as strings and leave as floats.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo

import orjson
import requests

from . import mapped
from .errors import ConfigError, TSError
from .symbols import symbols_of

if TYPE_CHECKING:
    import pandas as pd

EXCHANGE_TZ = "America/New_York"
MAX_INTRADAY_BARS = 57_600
QUOTE_BATCH = 100
DETAIL_BATCH = 50
ACCOUNT_BATCH = 25
PRICE_COLUMNS = ("Open", "High", "Low", "Close")
FLOAT_COLUMNS = (*PRICE_COLUMNS, "OpenInterest")
INT_COLUMNS = ("Volume", "UpTicks", "DownTicks", "UpVolume", "DownVolume", "TotalTicks", "Epoch")
FLAG_COLUMNS = ("IsRealtime", "IsEndOfHistory")
# Counts TradeStation sends as text: whole numbers become int64 (a fractional crypto quantity or
# a blank keeps the column float).
COUNT_COLUMNS = (
    "OpenInterest",
    "Quantity",
    "QuantityOrdered",
    "ExecQuantity",
    "QuantityRemaining",
    "Volume",
    "PreviousVolume",
    "BidSize",
    "AskSize",
    "LastSize",
    "DailyOpenInterest",
)


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:
        raise ConfigError(
            "DataFrames need pandas: pip install 'ts_notebook[pandas]' (pandas and matplotlib), then restart "
            "the kernel."
        ) from exc
    return pandas


def _get(session: requests.Session, path: str, **params: Any) -> dict[str, Any]:
    return _body(_sent(session, path, params).content, path)


def _sent(session: requests.Session, path: str, params: dict[str, Any], stream: bool = False) -> requests.Response:
    resp = session.get(path, params={k: v for k, v in params.items() if v is not None}, stream=stream)
    resp.raise_for_status()  # an APIError that says what to do
    return resp


def _body(content: bytes, path: str) -> dict[str, Any]:
    try:
        body = orjson.loads(content)  # (a fifth of the time json takes on a reply of bars)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise TSError(
            f"TradeStation's reply to {path} is not JSON of the expected kind (a proxy's page?). Try again; if it "
            "keeps happening, check TS_API_URL and the network between here and TradeStation."
        )
    return body


def _when(value: Any) -> str:
    """A date or time as the API takes it (a datetime in UTC, RFC 3339)."""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):  # a pandas Timestamp too; naive means exchange time
        aware = value if value.tzinfo else value.replace(tzinfo=ZoneInfo(EXCHANGE_TZ))
        return aware.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)  # a date, a pandas Timestamp's date ...


class ReplyCut(TSError):
    """A reply's body broke off before its end (the connection dropped while it was read)."""


class Bars(NamedTuple):
    """One symbol's bars as typed columns, the parts of a bar frame: ``index`` (exchange time,
    named ``Date`` or ``Datetime``) and ``columns`` (a bar frame's names, each an array of its
    final dtype). The many-symbol frames of ``ts.download`` are built from these, each symbol's
    let go as it is placed, with no frame of its own in between."""

    index: pd.DatetimeIndex
    columns: dict[str, Any]

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Bars:
        """A bar frame's columns (views: no copy)."""
        import numpy as np

        columns = {}
        for name, series in frame.items():
            columns[name] = series.to_numpy() if isinstance(series.dtype, np.dtype) else series.array
        return cls(frame.index, columns)

    def frame(self) -> pd.DataFrame:
        """A frame of these columns, each the frame's own and writable (a view is copied)."""
        import numpy as np

        columns = {
            name: values.copy() if isinstance(values, np.ndarray) and not values.flags.writeable else values
            for name, values in self.columns.items()
        }
        return _pandas().DataFrame(columns, index=self.index, copy=False)


def bar_frame(rows: list[dict[str, Any]], intraday: bool) -> pd.DataFrame:
    """Bars as a frame: a tz-aware exchange-time index (``Datetime`` intraday, ``Date``
    otherwise, as yfinance names them), Open/High/Low/Close (float) and Volume (int64) first."""
    return bar_columns_of(rows, intraday).frame()


def bar_columns_of(rows: list[dict[str, Any]], intraday: bool) -> Bars:
    """A bars reply's rows as :class:`Bars`, converted column by column, each once, as a whole."""
    pd = _pandas()
    if not rows:
        index = pd.DatetimeIndex([], tz=EXCHANGE_TZ, name="Datetime" if intraday else "Date")
        return Bars(index, typed_columns(pd, {c: [] for c in (*PRICE_COLUMNS, "TotalVolume")}))
    # In their final order from the start (any row may lack a blank field).
    keys = {key for row in rows for key in row}
    if "TimeStamp" not in keys:
        raise TSError("TradeStation's bars reply has no TimeStamp, so the bars cannot be placed in time. Try again.")
    columns = {name: [row.get(name) for row in rows] for name in bar_columns(keys)}
    index = pd.DatetimeIndex(pd.to_datetime(columns.pop("TimeStamp"), utc=True, format="ISO8601"))
    return Bars(exchange_index(index, intraday), typed_columns(pd, columns))


def _bars_reply(session: requests.Session, symbol: str, intraday: bool, **params: Any) -> Bars:
    """One bars request, its reply as :class:`Bars`, made in the one thread that turns replies
    into columns (:func:`_turner`)."""
    path = f"marketdata/barcharts/{symbol}"
    resp = _sent(session, path, params, stream=True)
    try:
        pieces = mapped.body(resp)
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
        raise ReplyCut(
            f"TradeStation's reply of bars for {symbol} broke off before its end ({type(exc).__name__}: the "
            "connection dropped). Try again."
        ) from None
    return _turner().submit(_turned, pieces, path, intraday).result()


def _turned(pieces: list[Any], path: str, intraday: bool) -> Bars:
    body = _body(mapped.joined(pieces), path)  # (the reply's bytes let go before its columns are made)
    return bar_columns_of(body.pop("Bars", None) or [], intraday)


_TURNER: list[ThreadPoolExecutor] = []
_TURNER_LOCK = threading.Lock()


def _forget_turner() -> None:
    """In a forked child: the parent's thread is not there (its executor would never run)."""
    global _TURNER_LOCK
    _TURNER.clear()
    _TURNER_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_turner)


def _turner() -> ThreadPoolExecutor:
    """The one thread that turns replies of bars into columns. While a reply is turned, its every
    bar is an object (about 1 KB a bar: 70 MB for 57,600), and the C library keeps what a thread
    has freed for that thread to use again: turned in eight workers, eight such high-water marks
    stay with the process; turned here, one. It is the GIL's work anyway, so one thread costs no
    time."""
    with _TURNER_LOCK:
        if not _TURNER:
            _TURNER.append(ThreadPoolExecutor(1, thread_name_prefix="ts_bars"))
        return _TURNER[0]


def bar_columns(keys: Iterable[str]) -> list[str]:
    """A bars reply's fields (or a bar frame's) in the order a bar frame has them."""
    keys = set(keys)
    leading = [c for c in (*PRICE_COLUMNS, "TotalVolume", "Volume") if c in keys]
    return [*leading, *sorted(keys - set(leading))]


def exchange_index(index: pd.DatetimeIndex, intraday: bool) -> pd.DatetimeIndex:
    """Bar times (tz-aware) as a bar frame's index: exchange time, named as yfinance names it."""
    return index.tz_convert(EXCHANGE_TZ).rename("Datetime" if intraday else "Date")


def typed_columns(pd: Any, columns: dict[str, Any]) -> dict[str, Any]:
    """Bars' fields (TradeStation's names in :func:`bar_columns` order but ``TimeStamp``, each a
    list of a reply's values) as a bar frame's columns: ``Volume`` for ``TotalVolume``, prices as floats,
    counts as int64, flags as booleans; the one typing every bar frame has, fetched or kept."""
    import numpy as np

    typed = {}
    for name, values in columns.items():
        name = "Volume" if name == "TotalVolume" else name
        if name in FLOAT_COLUMNS:
            values = _numbers(pd, np, values, np.float64)
        elif name in INT_COLUMNS:
            values = _numbers(pd, np, values, np.int64)
        elif name in FLAG_COLUMNS:
            values = _flags(pd, np, values)
        elif isinstance(values, list):  # (BarStatus, and any field not known here: as pandas reads it)
            values = pd.Series(values).array
        typed[name] = values
    return typed


def _numbers(pd: Any, np: Any, values: Any, dtype: Any) -> Any:
    """``values`` (a reply's numbers, or numbers as text) as an array of ``dtype`` in one
    vectorised cast; blanks (None, "", NaN) only take the slower path: NaN for floats, 0 for
    counts, and a count past int64 stays a float."""
    try:
        return np.asarray(values, dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        pass
    numbers = pd.to_numeric(pd.Series(values, dtype=object).replace("", None), errors="coerce")
    numbers = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    if dtype is np.float64 or np.nanmax(np.abs(numbers), initial=0.0) >= 2.0**63:
        return numbers
    return np.nan_to_num(numbers, nan=0.0).astype(np.int64)


def _flags(pd: Any, np: Any, values: Any) -> Any:
    """``values`` as booleans, a blank as False."""
    try:
        return np.asarray(values, dtype=bool)
    except (ValueError, TypeError):
        return pd.Series(values, dtype=object).fillna(False).astype(bool).to_numpy()


def bars(session: requests.Session, symbol: str, *args: Any, **kwargs: Any) -> pd.DataFrame:
    """:func:`bars_of` as a DataFrame (see :func:`bar_frame`)."""
    return bars_of(session, symbol, *args, **kwargs).frame()


def bars_of(
    session: requests.Session,
    symbol: str,
    interval: int = 1,
    unit: str = "Daily",
    barsback: int | None = None,
    start: Any = None,
    end: Any = None,
    sessiontemplate: str | None = None,
) -> Bars:
    """Bars of ``symbol`` as :class:`Bars` (a frame's columns, no frame).

    ``barsback`` bars ending at ``end`` (default now), or every bar from ``start``. Intraday
    requests past TradeStation's 57,600 bars per request are split and joined, with no bar twice.
    """
    pd = _pandas()
    intraday = unit == "Minute"
    per_request = MAX_INTRADAY_BARS if intraday else None
    common = {"interval": interval, "unit": unit, "sessiontemplate": sessiontemplate}
    if not intraday or (start is None and (barsback or 1) <= MAX_INTRADAY_BARS):
        last = _when(end) if end is not None else None
        if start is not None:
            return _bars_reply(session, symbol, intraday, firstdate=_when(start), lastdate=last, **common)
        return _bars_reply(session, symbol, intraday, barsback=barsback or 1, lastdate=last, **common)
    # Intraday, more than one request holds: page back from the end, 57,600 bars at a time.
    frames, wanted, last, previous = [], barsback, _when(end) if end is not None else None, None
    since = None
    if start is not None:
        since = pd.Timestamp(start)
        since = since.tz_localize(EXCHANGE_TZ) if since.tzinfo is None else since
    while True:
        size = per_request if wanted is None else min(per_request, wanted)
        page = _bars_reply(session, symbol, intraday, barsback=size, lastdate=last, **common)
        if not len(page.index):
            break
        frames.append(page.frame())
        earliest = page.index[0]
        if wanted is not None:
            wanted -= len(page.index)
        if (wanted is not None and wanted <= 0) or len(page.index) < size or (since is not None and earliest <= since):
            break
        if previous is not None and earliest >= previous:
            break  # the page did not move back in time: more of them would not either
        previous = earliest
        last = _when((earliest - timedelta(seconds=1)).tz_convert("UTC").to_pydatetime())
    if not frames:
        return bar_columns_of([], intraday)
    frame = join_pages(frames)
    if since is not None:
        frame = frame[frame.index >= since]
    return Bars.of(frame if barsback is None else frame.iloc[-barsback:])


def join_pages(pages: list[pd.DataFrame]) -> pd.DataFrame:
    """Pages of bars (any order, possibly overlapping at their edges) as one frame in time
    order, each bar once (the newest page's copy)."""
    pd = _pandas()
    frame = pd.concat(pages)
    return frame[~frame.index.duplicated(keep="first")].sort_index()


def numeric(frame: pd.DataFrame, keep: Iterable[str] = ()) -> pd.DataFrame:
    """Every text column whose values are all numbers (or blank) becomes a float column, or an
    int64 one for a count (:data:`COUNT_COLUMNS`) that is whole throughout; ids (columns named
    ``...ID``) stay text, leading zeros and all."""
    pd = _pandas()
    for column in frame.columns:
        if column in keep or str(column).endswith("ID") or frame[column].dtype.kind not in "OUS":
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().sum() == frame[column].replace("", None).notna().sum():
            values = values.astype("float64")
            whole = values.notna().all() and (values % 1 == 0).all() and (values.abs() < 2.0**63).all()
            frame[column] = values.astype("int64") if column in COUNT_COLUMNS and whole else values
    return frame


def _warn_errors(errors: list[dict[str, Any]], key: str) -> None:
    if errors:
        names = ", ".join(f"{e.get(key, '?')} ({e.get('Error') or e.get('Message') or 'error'})" for e in errors)
        warnings.warn(f"TradeStation left out: {names}", stacklevel=3)


def _batched(session: requests.Session, route: str, symbols: Any, size: int, key: str, call: str) -> tuple[list, list]:
    """``route/SYM1,SYM2,...`` for ``symbols``, ``size`` at a time: the replies' ``key`` rows,
    and their ``Errors`` (symbols TradeStation refused: a warning naming them)."""
    wanted = symbols_of(symbols, call)
    rows, errors = [], []
    for at in range(0, len(wanted), size):
        body = _get(session, f"{route}/{','.join(wanted[at : at + size])}")
        rows += body.get(key, [])
        errors += body.get("Errors", [])
    _warn_errors(errors, "Symbol")
    return rows, errors


def quotes(session: requests.Session, symbols: str | Sequence[str]) -> pd.DataFrame:
    """Quotes indexed by symbol, numbers as numbers; asked 100 at a time. Symbols TradeStation
    refuses are a warning naming them, and the rest are kept."""
    pd = _pandas()
    rows, _ = _batched(session, "marketdata/quotes", symbols, QUOTE_BATCH, "Quotes", "ts.quotes")
    frame = pd.json_normalize(rows) if rows else pd.DataFrame(columns=["Symbol"])
    return numeric(frame.set_index("Symbol"), keep=("TradeTime",))


def symbols(session: requests.Session, symbols: str | Sequence[str]) -> pd.DataFrame:
    """Symbol details indexed by symbol: description, exchange, asset type, the price format
    (``PriceDecimals``, ``PriceIncrement``, ``PointValue`` ...) and the quantity format, numbers
    as numbers; asked 50 at a time. Symbols TradeStation refuses are a warning naming them, and
    in ``attrs["errors"]``; the rest are kept."""
    pd = _pandas()
    rows, errors = _batched(session, "marketdata/symbols", symbols, DETAIL_BATCH, "Symbols", "ts.symbols")
    frame = pd.json_normalize(rows) if rows else pd.DataFrame(columns=["Symbol"])
    frame = frame.rename(columns=_detail_name)
    frame = numeric(frame.set_index("Symbol"), keep=("Root", "Underlying"))
    frame.attrs["errors"] = {e.get("Symbol", "?"): e.get("Message") or e.get("Error") or "refused" for e in errors}
    return frame


def _detail_name(column: str) -> str:
    """``PriceFormat.Increment`` -> ``PriceIncrement``, ``PriceFormat.PointValue`` ->
    ``PointValue``, ``QuantityFormat.Format`` -> ``QuantityFormat``: flat, readable names."""
    group, _, field = column.partition(".")
    if not field or group not in ("PriceFormat", "QuantityFormat"):
        return column
    if field == "PointValue":
        return field
    return group if field == "Format" else group.removesuffix("Format") + field


def expirations(session: requests.Session, underlying: str) -> pd.DataFrame:
    """The option expirations of ``underlying``: a ``Date`` (a date) and its ``Type`` (Weekly,
    Monthly ...), soonest first."""
    pd = _pandas()
    rows = _get(session, f"marketdata/options/expirations/{underlying}").get("Expirations", [])
    frame = pd.DataFrame(rows, columns=["Date", "Type"])
    frame["Date"] = pd.to_datetime(frame["Date"], utc=True).dt.date
    return frame.sort_values("Date", ignore_index=True)


# The chain's columns first, in this order; TradeStation's other figures follow.
CHAIN_FIRST = ("Symbol", "Bid", "Ask", "Last", "Volume", "OpenInterest", "ImpliedVolatility")
GREEKS = ("Delta", "Gamma", "Theta", "Vega", "Rho")


def options(
    session: requests.Session, underlying: str, expiration: Any = None, strikes: int | None = None
) -> pd.DataFrame:
    """The option chain of ``underlying`` for ``expiration`` (a date, or text; None: the next
    one) at ``strikes`` strikes either side of the money (None: TradeStation's default, 5), as
    the chain stream's snapshot gives it: indexed by (Expiration, Strike, Side), with the
    option's symbol, bid, ask, last, volume, open interest, implied volatility and the greeks
    first, then TradeStation's other figures, numbers as numbers.

    Raises:
        TSError: TradeStation has no such chain (the stream's error says why).
    """
    pd = _pandas()
    if strikes is not None and (isinstance(strikes, bool) or not isinstance(strikes, int) or strikes < 1):
        raise ConfigError(f"strikes must be a whole number of strikes either side of the money, not {strikes!r}.")
    params: dict[str, Any] = {"enableGreeks": "true"}
    if expiration is not None:
        params["expiration"] = _when(expiration)[:10] if not isinstance(expiration, str) else expiration
    if strikes is not None:
        params["strikeProximity"] = strikes
    from .kernel.replies import APIError

    rows = []
    try:
        with session.iter_stream(f"marketdata/stream/options/chains/{underlying}", markers=True, **params) as stream:
            for item in stream:
                if item.get("StreamStatus") == "EndSnapshot":
                    break
                rows.append(item)
    except APIError as exc:
        if exc.status != 200:  # refused before the stream began: its own message says what to do
            raise
        raise TSError(
            f"TradeStation has no such option chain: {exc.message or exc.error}. ts.expirations({underlying!r}) "
            "lists the expirations it has."
        ) from None
    return chain_frame(pd, rows)


def chain_frame(pd: Any, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The chain stream's objects as a frame (see :func:`options`)."""
    names = ["Expiration", "Strike", "Side"]
    if not rows:
        return pd.DataFrame(index=pd.MultiIndex.from_arrays([[], [], []], names=names), columns=[*CHAIN_FIRST, *GREEKS])
    legs = [row.get("Legs") or [{}] for row in rows]
    frame = pd.DataFrame([{k: v for k, v in row.items() if k not in ("Legs", "Strikes")} for row in rows])
    frame["Symbol"] = [leg[0].get("Symbol") for leg in legs]
    frame["Expiration"] = pd.to_datetime([leg[0].get("Expiration") for leg in legs], utc=True).date
    frame["Strike"] = pd.to_numeric([leg[0].get("StrikePrice") for leg in legs], errors="coerce")
    frame = frame.rename(columns={"DailyOpenInterest": "OpenInterest"})
    first = [c for c in (*CHAIN_FIRST, *GREEKS) if c in frame]
    frame = frame[[*names, *first, *sorted(set(frame) - set(first) - set(names))]]
    return numeric(frame.set_index(names).sort_index(), keep=("Symbol",))


def accounts(session: requests.Session) -> pd.DataFrame:
    """The accounts this sign-in can see, indexed by AccountID."""
    pd = _pandas()
    rows = _get(session, "brokerage/accounts").get("Accounts", [])
    return pd.DataFrame.from_records(rows).set_index("AccountID") if rows else pd.DataFrame()


def _per_account(
    session: requests.Session, kind: str, key: str, ids: Sequence[str] | str | None, page_size: int | None = None
) -> pd.DataFrame:
    pd = _pandas()
    if ids is None:
        ids = list(accounts(session).index)
    ids = [i.strip() for i in (ids.split(",") if isinstance(ids, str) else ids) if i.strip()]
    rows, errors = [], []
    for at in range(0, len(ids), ACCOUNT_BATCH):
        path, token, seen = f"brokerage/accounts/{','.join(ids[at : at + ACCOUNT_BATCH])}/{kind}", None, set()
        while True:
            body = _get(session, path, pageSize=page_size, nextToken=token) if page_size else _get(session, path)
            rows += body.get(key, [])
            errors += body.get("Errors", [])
            token = body.get("NextToken") if page_size else None
            if not token:
                break
            if token in seen:
                warnings.warn(f"TradeStation repeated a page token for {kind}; stopped paging there", stacklevel=3)
                break
            seen.add(token)
    _warn_errors(errors, "AccountID")
    frame = pd.json_normalize(rows) if rows else pd.DataFrame(columns=["AccountID"])
    return numeric(frame, keep=("AccountID", "OrderID"))


def balances(session: requests.Session, accounts: Sequence[str] | str | None = None) -> pd.DataFrame:
    """Balances of ``accounts`` (default: every account), indexed by AccountID."""
    return _per_account(session, "balances", "Balances", accounts).set_index("AccountID")


def positions(session: requests.Session, accounts: Sequence[str] | str | None = None) -> pd.DataFrame:
    """Open positions of ``accounts`` (default: every account), one row each."""
    return _per_account(session, "positions", "Positions", accounts)


def orders(
    session: requests.Session, accounts: Sequence[str] | str | None = None, page_size: int = 600
) -> pd.DataFrame:
    """Orders of ``accounts`` (default: every account), ``page_size`` a request, every page followed."""
    return _per_account(session, "orders", "Orders", accounts, page_size)

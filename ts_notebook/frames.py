"""TradeStation's replies as pandas DataFrames: bars, quotes, accounts, balances, positions, orders.

Needs the ``pandas`` extra (``pip install 'ts_notebook[pandas]'``); it is imported on first use,
never by ``import ts_notebook``. Conversion is column-wise (vectorised): 57,600 bars are one
``DataFrame`` built once, not a loop over rows. Prices arrive as strings and leave as floats.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from .errors import ConfigError, TSError

if TYPE_CHECKING:
    import pandas as pd
    import requests

EXCHANGE_TZ = "America/New_York"
MAX_INTRADAY_BARS = 57_600
QUOTE_BATCH = 100
DETAIL_BATCH = 50
ACCOUNT_BATCH = 25
PRICE_COLUMNS = ("Open", "High", "Low", "Close")
INT_COLUMNS = ("Volume", "UpTicks", "DownTicks", "UpVolume", "DownVolume", "TotalTicks", "Epoch")
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
    resp = session.get(path, params={k: v for k, v in params.items() if v is not None})
    resp.raise_for_status()  # an APIError that says what to do
    try:
        body = resp.json()
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


def bar_frame(rows: list[dict[str, Any]], intraday: bool) -> pd.DataFrame:
    """Bars as a frame: a tz-aware exchange-time index (``Datetime`` intraday, ``Date``
    otherwise, as yfinance names them), Open/High/Low/Close (float) and Volume (int64) first."""
    pd = _pandas()
    if not rows:
        index = pd.DatetimeIndex([], tz=EXCHANGE_TZ, name="Datetime" if intraday else "Date")
        return (
            pd.DataFrame(columns=[*PRICE_COLUMNS, "Volume"], index=index).astype("float64").astype({"Volume": "int64"})
        )
    # Columns in their final order from the start (any row may lack a blank field).
    keys = set().union(*rows)
    if "TimeStamp" not in keys:
        raise TSError("TradeStation's bars reply has no TimeStamp, so the bars cannot be placed in time. Try again.")
    frame = pd.DataFrame(rows, columns=bar_columns(keys))
    index = pd.DatetimeIndex(pd.to_datetime(frame.pop("TimeStamp"), utc=True))
    return laid_out(pd, frame, index, intraday)


def bar_columns(keys: Iterable[str]) -> list[str]:
    """A bars reply's fields in the order a bar frame has them (``TimeStamp`` among them)."""
    keys = set(keys)
    leading = [c for c in (*PRICE_COLUMNS, "TotalVolume") if c in keys]
    return [*leading, *sorted(keys - set(leading))]


def laid_out(pd: Any, frame: pd.DataFrame, index: pd.DatetimeIndex, intraday: bool) -> pd.DataFrame:
    """Bars' fields (``frame``, columns in :func:`bar_columns` order but ``TimeStamp``) at their
    times (``index``, UTC) as a bar frame: the one layout every bar frame has, fetched or kept."""
    frame = frame.rename(columns={"TotalVolume": "Volume"})
    frame.index = index.tz_convert(EXCHANGE_TZ).rename("Datetime" if intraday else "Date")
    for column in (*PRICE_COLUMNS, "OpenInterest"):
        if column in frame:
            frame[column] = _as(pd, frame[column], "float64")
    for column in INT_COLUMNS:
        if column in frame and frame[column].dtype != "int64":
            frame[column] = _as(pd, frame[column], "int64")
    for column in ("IsRealtime", "IsEndOfHistory"):
        if column in frame and frame[column].dtype != bool:
            frame[column] = frame[column].fillna(False).astype(bool)
    return frame


def _as(pd: Any, column: pd.Series, dtype: str) -> pd.Series:
    """``column`` as ``dtype`` in one vectorised cast; blanks (None, "") only take the slower path
    (NaN for floats, 0 for counts)."""
    try:
        return column.astype(dtype)
    except (ValueError, TypeError, OverflowError):
        values = pd.to_numeric(column.replace("", None), errors="coerce").astype("float64")
        if dtype == "float64" or values.abs().max() >= 2.0**63:  # a count past int64 stays a float
            return values
        return values.fillna(0).astype(dtype)


def bars(
    session: requests.Session,
    symbol: str,
    interval: int = 1,
    unit: str = "Daily",
    barsback: int | None = None,
    start: Any = None,
    end: Any = None,
    sessiontemplate: str | None = None,
) -> pd.DataFrame:
    """Bars of ``symbol`` as a DataFrame (see :func:`bar_frame`).

    ``barsback`` bars ending at ``end`` (default now), or every bar from ``start``. Intraday
    requests past TradeStation's 57,600 bars per request are split and joined, with no bar twice.
    """
    return _bars(session, symbol, interval, unit, barsback, start, end, sessiontemplate)


def _bars(
    session: requests.Session,
    symbol: str,
    interval: int,
    unit: str,
    barsback: int | None,
    start: Any,
    end: Any,
    sessiontemplate: str | None,
    keep: Any = None,
) -> pd.DataFrame:
    """:func:`bars`, each reply's rows also handed to ``keep`` (the bar cache) as they come."""
    pd = _pandas()
    intraday = unit == "Minute"
    got = _get if keep is None else lambda *a, **k: _kept(keep, _get(*a, **k))
    per_request = MAX_INTRADAY_BARS if intraday else None
    common = {"interval": interval, "unit": unit, "sessiontemplate": sessiontemplate}
    if not intraday or (start is None and (barsback or 1) <= MAX_INTRADAY_BARS):
        if start is not None:
            rows = got(
                session,
                f"marketdata/barcharts/{symbol}",
                firstdate=_when(start),
                lastdate=_when(end) if end is not None else None,
                **common,
            ).get("Bars", [])
        else:
            rows = got(
                session,
                f"marketdata/barcharts/{symbol}",
                barsback=barsback or 1,
                lastdate=_when(end) if end is not None else None,
                **common,
            ).get("Bars", [])
        return bar_frame(rows, intraday)
    # Intraday, more than one request holds: page back from the end, 57,600 bars at a time.
    frames, wanted, last, previous = [], barsback, _when(end) if end is not None else None, None
    since = None
    if start is not None:
        since = pd.Timestamp(start)
        since = since.tz_localize(EXCHANGE_TZ) if since.tzinfo is None else since
    while True:
        size = per_request if wanted is None else min(per_request, wanted)
        rows = got(session, f"marketdata/barcharts/{symbol}", barsback=size, lastdate=last, **common).get("Bars", [])
        if not rows:
            break
        frames.append(bar_frame(rows, intraday))
        earliest = frames[-1].index[0]
        if wanted is not None:
            wanted -= len(rows)
        if (wanted is not None and wanted <= 0) or len(rows) < size or (since is not None and earliest <= since):
            break
        if previous is not None and earliest >= previous:
            break  # the page did not move back in time: more of them would not either
        previous = earliest
        last = _when((earliest - timedelta(seconds=1)).tz_convert("UTC").to_pydatetime())
    if not frames:
        return bar_frame([], intraday)
    frame = join_pages(frames)
    if since is not None:
        frame = frame[frame.index >= since]
    return frame if barsback is None else frame.iloc[-barsback:]


def _kept(keep: Any, body: dict[str, Any]) -> dict[str, Any]:
    keep(body.get("Bars", []))
    return body


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


def quotes(session: requests.Session, symbols: str | Sequence[str]) -> pd.DataFrame:
    """Quotes indexed by symbol, numbers as numbers; asked 100 at a time. Symbols TradeStation
    refuses are a warning naming them, and the rest are kept."""
    pd = _pandas()
    wanted = [s.strip() for s in (symbols.split(",") if isinstance(symbols, str) else symbols) if s.strip()]
    if not wanted:
        raise ConfigError("Give at least one symbol, such as ts.quotes(['MSFT', 'AAPL']).")
    rows, errors = [], []
    for at in range(0, len(wanted), QUOTE_BATCH):
        body = _get(session, f"marketdata/quotes/{','.join(wanted[at : at + QUOTE_BATCH])}")
        rows += body.get("Quotes", [])
        errors += body.get("Errors", [])
    _warn_errors(errors, "Symbol")
    frame = pd.json_normalize(rows) if rows else pd.DataFrame(columns=["Symbol"])
    return numeric(frame.set_index("Symbol"), keep=("TradeTime",))


def symbols(session: requests.Session, symbols: str | Sequence[str]) -> pd.DataFrame:
    """Symbol details indexed by symbol: description, exchange, asset type, the price format
    (``PriceDecimals``, ``PriceIncrement``, ``PointValue`` ...) and the quantity format, numbers
    as numbers; asked 50 at a time. Symbols TradeStation refuses are a warning naming them, and
    in ``attrs["errors"]``; the rest are kept."""
    pd = _pandas()
    wanted = [s.strip() for s in (symbols.split(",") if isinstance(symbols, str) else symbols) if s.strip()]
    if not wanted:
        raise ConfigError("Give at least one symbol, such as ts.symbols(['MSFT', 'ESZ26']).")
    rows, errors = [], []
    for at in range(0, len(wanted), DETAIL_BATCH):
        body = _get(session, f"marketdata/symbols/{','.join(wanted[at : at + DETAIL_BATCH])}")
        rows += body.get("Symbols", [])
        errors += body.get("Errors", [])
    _warn_errors(errors, "Symbol")
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

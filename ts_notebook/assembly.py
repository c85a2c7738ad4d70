"""Many symbols' bars as one frame, in the two shapes ``ts.download`` gives, whatever the number
of symbols: ``wide``, columns a MultiIndex (field, symbol) over one time index (the union of
the symbols' times, a symbol's missing bars NaN); ``long``, rows indexed by (symbol, time).

Built from each symbol's :class:`ts_notebook.frames.Bars`, taken one symbol at a time and let
go once placed: each field's array is made once and filled symbol by symbol, so at its peak a
download holds about one copy of the bars (the symbols' not yet placed, and the frame's), not
two. Numbers and flags go in one block per field (``frame["Close"]`` is one array); a column of
text (``BarStatus``) stays the symbol's own.
"""

from __future__ import annotations

from typing import Any

from .frames import EXCHANGE_TZ, PRICE_COLUMNS, Bars

LAYOUTS = ("wide", "long")


def assembled(pd: Any, order: list[str], parts: dict[str, Bars], intraday: bool, layout: str) -> Any:
    """The bars of ``order`` (each in ``parts``, which is emptied) as one frame of ``layout``."""
    import numpy as np

    time_name = "Datetime" if intraday else "Date"
    fields = list(dict.fromkeys(c for s in order for c in parts[s].columns)) or [*PRICE_COLUMNS, "Volume"]
    if not order:
        return _empty(pd, fields, time_name, layout)
    if layout == "long":
        return _long(pd, np, order, parts, fields, time_name)
    return _wide(pd, np, order, parts, fields, time_name)


def _empty(pd: Any, fields: list[str], time_name: str, layout: str) -> Any:
    times = pd.DatetimeIndex([], tz=EXCHANGE_TZ, name=time_name)
    if layout == "long":
        return pd.DataFrame(index=pd.MultiIndex.from_arrays([[], times], names=["Symbol", time_name]), columns=fields)
    return pd.DataFrame(index=times, columns=pd.MultiIndex.from_product([fields, []], names=["Field", "Symbol"]))


def _block_dtype(np: Any, order: list[str], parts: dict[str, Bars], field: str, whole: bool) -> Any:
    """The dtype of ``field``'s block: its own when every symbol has it alike and ``whole`` (no
    symbol lacks a bar); float64 (NaN for what is missing) for numbers otherwise; None for text
    or flags with gaps (a column per symbol, as pandas would fill it)."""
    dtypes = {parts[s].columns[field].dtype for s in order if field in parts[s].columns}
    if not all(isinstance(d, np.dtype) and d.kind in "iufb" for d in dtypes):
        return None
    every = whole and all(field in parts[s].columns for s in order)
    if every and len(dtypes) == 1:
        return next(iter(dtypes))
    if all(d.kind in "iuf" for d in dtypes):
        return np.dtype(np.float64)
    return None


def _concat_columns(pd: Any, pieces: list[Any], fields: list[str]) -> Any:
    # pandas 3 joins columns without a copy (copy on write); pandas 2 copies unless told not to.
    no_copy = {"copy": False} if int(pd.__version__.split(".")[0]) < 3 else {}
    return pd.concat(pieces, axis=1, keys=fields, names=["Field", "Symbol"], **no_copy)


def _wide(pd: Any, np: Any, order: list[str], parts: dict[str, Bars], fields: list[str], time_name: str) -> Any:
    union = parts[order[0]].index
    for symbol in order[1:]:
        if not parts[symbol].index.equals(union):
            union = union.union(parts[symbol].index)
    union = union.rename(time_name)
    whole = all(parts[s].index.equals(union) for s in order)
    dtypes = {f: _block_dtype(np, order, parts, f, whole) for f in fields}
    # Made once, filled a symbol (a row) at a time: a page is used only once written.
    blocks = {f: np.empty((len(order), len(union)), dtype) for f, dtype in dtypes.items() if dtype is not None}
    texts: dict[str, list[Any]] = {f: [] for f, dtype in dtypes.items() if dtype is None}
    for row, symbol in enumerate(order):
        bars = parts.pop(symbol)
        at = None if bars.index.equals(union) else union.get_indexer(bars.index)
        for field, block in blocks.items():
            values = bars.columns.get(field)
            if values is not None and at is None:
                block[row] = values
                continue
            block[row] = np.nan  # (a float block: missing bars, or a field this symbol lacks)
            if values is not None:
                block[row, at] = values
        for field, columns in texts.items():
            values = bars.columns.get(field)
            if values is None:
                values = np.full(len(union), np.nan)
            elif at is not None:
                values = pd.Series(values, index=bars.index, copy=False).reindex(union).array
            columns.append(values)
        del bars
    symbols = pd.Index(order, name="Symbol")
    pieces = [
        pd.DataFrame(blocks[f].T, index=union, columns=symbols, copy=False)
        if f in blocks
        else pd.DataFrame(dict(zip(order, texts[f], strict=True)), index=union, copy=False).set_axis(symbols, axis=1)
        for f in fields
    ]
    return _concat_columns(pd, pieces, fields)


def _long(pd: Any, np: Any, order: list[str], parts: dict[str, Bars], fields: list[str], time_name: str) -> Any:
    lengths = [len(parts[s].index) for s in order]
    ends = np.cumsum(lengths)
    times = parts[order[0]].index.append([parts[s].index for s in order[1:]])
    rowed = [s for s, length in zip(order, lengths, strict=True) if length]  # (one with no bar adds no dtype)
    dtypes = {f: _block_dtype(np, rowed, parts, f, True) for f in fields}
    columns: dict[str, Any] = {f: np.empty(int(ends[-1]), dtype) for f, dtype in dtypes.items() if dtype is not None}
    texts: dict[str, list[Any]] = {f: [] for f, dtype in dtypes.items() if dtype is None}
    for symbol, end, length in zip(order, ends, lengths, strict=True):
        bars = parts.pop(symbol)
        if not length:
            continue
        for field, column in columns.items():
            values = bars.columns.get(field)
            column[end - length : end] = np.nan if values is None else values
        for field, pieces in texts.items():
            values = bars.columns.get(field)
            pieces.append(pd.Series(np.nan if values is None else values, index=pd.RangeIndex(length)))
        del bars
    for field, pieces in texts.items():
        columns[field] = pd.concat(pieces, ignore_index=True).array if pieces else np.array([], dtype=object)
    codes, levels = pd.factorize(times, sort=True)
    index = pd.MultiIndex(
        levels=[pd.Index(order), levels.rename(None)],
        codes=[np.repeat(np.arange(len(order)), lengths), codes],
        names=["Symbol", time_name],
        verify_integrity=False,
    )
    return pd.DataFrame({f: columns[f] for f in fields}, index=index, copy=False)

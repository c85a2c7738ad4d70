"""Many symbols' bars as one frame: the frame pandas' own concat makes of the symbols' frames
(the union of their times, NaN where a symbol has no bar, a field one symbol lacks NaN for it),
in both shapes, built from each symbol's columns with each symbol let go once placed. One
difference, on purpose: a field of numbers with a gap anywhere is float64 for every symbol
(one dtype and one block per field), where concat leaves the whole symbols' counts int64."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ts_notebook import frames
from ts_notebook.assembly import assembled
from ts_notebook.emulator import market
from ts_notebook.emulator.prices import EXCHANGE


def bars_of(symbol: str, days: int, skip: int = 0, unit: str = "Daily") -> frames.Bars:
    """``days`` bars of ``symbol`` ending on 2026-11-27, the ``skip`` newest left out."""
    now = pd.Timestamp("2026-11-27 17:00", tz=EXCHANGE).to_pydatetime()
    rows = market.barchart(symbol, {"barsback": str(days + skip), "unit": unit}, now)["Bars"]
    return frames.bar_columns_of(rows[: len(rows) - skip], unit == "Minute")


def reference(parts: dict[str, frames.Bars], layout: str) -> pd.DataFrame:
    """What the frame is: pandas' concat of the symbols' frames (as ts.download built it before)."""
    got = {s: b.frame() for s, b in parts.items()}
    order, name = list(got), next(iter(got.values())).index.name
    fields = list(dict.fromkeys(c for f in got.values() for c in f.columns))
    if layout == "long":  # (a symbol with no bar adds no row: left out, as pandas 3 leaves it)
        rows = [s for s in order if len(got[s])]
        return pd.concat([got[s] for s in rows], keys=rows, names=["Symbol", name]).reindex(columns=fields)
    wide = pd.concat(got.values(), axis=1, keys=order, names=["Symbol", "Field"])
    columns = pd.MultiIndex.from_product([fields, order], names=["Field", "Symbol"])
    wide = wide.swaplevel(axis=1).reindex(columns=columns).rename_axis(name)
    for field in fields:
        kinds = {wide[(field, s)].dtype.kind for s in order}
        if kinds <= set("iuf") and "f" in kinds:
            wide = wide.astype({(field, s): "float64" for s in order})
    return wide


def without(bars: frames.Bars, field: str) -> frames.Bars:
    return frames.Bars(bars.index, {k: v for k, v in bars.columns.items() if k != field})


CASES = {
    "alike": lambda: {"MSFT": bars_of("MSFT", 30), "AAPL": bars_of("AAPL", 30), "SPY": bars_of("SPY", 30)},
    "one": lambda: {"MSFT": bars_of("MSFT", 30)},
    "other-times": lambda: {"MSFT": bars_of("MSFT", 30), "AAPL": bars_of("AAPL", 20, skip=5)},
    "a-field-lacking": lambda: {"MSFT": bars_of("MSFT", 30), "AAPL": without(bars_of("AAPL", 30), "OpenInterest")},
    "a-count-lacking": lambda: {"MSFT": bars_of("MSFT", 30), "AAPL": without(bars_of("AAPL", 30), "UpTicks")},
    "no-bars": lambda: {"MSFT": bars_of("MSFT", 30), "AAPL": frames.bar_columns_of([], False)},
    "minutes": lambda: {"MSFT": bars_of("MSFT", 90, unit="Minute"), "AAPL": bars_of("AAPL", 60, 10, "Minute")},
}


@pytest.mark.parametrize("layout", ["wide", "long"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_frame_is_the_one_pandas_concat_makes_of_the_symbols_frames(case, layout):
    parts = CASES[case]()
    expected = reference(parts, layout)
    order = list(parts)
    intraday = case == "minutes"

    frame = assembled(pd, order, parts, intraday, layout)

    pd.testing.assert_frame_equal(frame, expected, check_index_type=False, check_column_type=False)
    assert parts == {}  # each symbol let go once placed


def test_a_wide_frames_numbers_are_one_block_per_field():
    parts = CASES["alike"]()

    frame = assembled(pd, list(parts), parts, False, "wide")

    close = frame["Close"]
    assert close.shape == (30, 3) and close._mgr.nblocks == 1  # one array for the field
    assert not np.shares_memory(close.to_numpy(), frame["Open"].to_numpy())


def test_no_symbol_is_the_fixed_shape_with_no_rows():
    for layout, names in (("wide", ["Field", "Symbol"]), ("long", None)):
        frame = assembled(pd, [], {}, True, layout)
        assert frame.empty and list(frame.columns.names) == (names or [None])

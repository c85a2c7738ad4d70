"""Bars to a DataFrame: ts_notebook's conversion of 57,600 one-minute bars (the most one request
gives) against the same done by hand, ``pd.DataFrame(json)`` then ``astype``, on the same
parsed reply. Rounds alternate so noise hits both alike; the ratio (ours / by hand) is the
figure to watch (1.0 or less: no slower).

    python bench/bars_frame.py [--rounds 7] [--bars 57600]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime, timezone

import pandas as pd

from ts_notebook.emulator.market import barchart
from ts_notebook.frames import bar_frame


def by_hand(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df.index = pd.DatetimeIndex(pd.to_datetime(df.pop("TimeStamp"), utc=True)).tz_convert("America/New_York")
    return df.astype(
        {"Open": "float64", "High": "float64", "Low": "float64", "Close": "float64", "TotalVolume": "int64"}
    )


def timed(convert, body: bytes) -> float:
    rows = json.loads(body)["Bars"]  # a fresh parse each time: no shared cached objects
    started = time.perf_counter()
    convert(rows)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--bars", type=int, default=57_600)
    args = parser.parse_args()
    reply = barchart("MSFT", {"unit": "Minute", "barsback": str(args.bars)}, datetime.now(timezone.utc))
    body = json.dumps(reply).encode()
    ours, hand = [], []
    for _ in range(args.rounds):
        ours.append(timed(lambda rows: bar_frame(rows, intraday=True), body))
        hand.append(timed(by_hand, body))
    print(f"{args.bars} bars, {args.rounds} alternating rounds, medians:")
    print(f"  ts_notebook bar_frame      {statistics.median(ours) * 1e3:8.1f} ms")
    print(f"  DataFrame + astype by hand {statistics.median(hand) * 1e3:8.1f} ms")
    print(f"  ratio                      {statistics.median(ours) / statistics.median(hand):8.2f}")


if __name__ == "__main__":
    main()

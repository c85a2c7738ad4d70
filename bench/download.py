"""Bars of a universe: ``ts.download`` against the sequential ``ts.bars`` loop an analyst writes
today, and against the same download written by hand with a ``ThreadPoolExecutor`` over
``ts.bars``; 100 symbols x 2 years of daily bars from the emulator with a 30 ms latency on
every request (as a remote API has). Rounds alternate the three so that the machine's noise
hits them alike; the ratios are the figures to watch (loop / download: 5 or more; by hand /
download: 1 or more).

Then the cache: the same download of a fixed past range run cold (an empty cache) and again
(every bar kept: no request at all, counted at the session), and the ratio cold / again (20 or
more wanted).

Then memory (``--memory``, a run of its own: the emulator takes minutes to make the bars): 100
symbols x 57,600 minute bars, each way in a fresh process, the peak of its resident memory
over what it held before, against the size of the frame it returns (within 2x wanted):
``ts.download``, and the same by hand (a pool over ``ts.bars``, then ``pd.concat``).

The emulator runs in a process of its own (in this one it would share the interpreter with the
clients it serves), and a first untimed pass computes its bars once, so that what each request
costs is the latency, as at a remote API, not the emulator's own arithmetic.

    python bench/download.py [--rounds 3] [--symbols 100] [--days 504] [--latency 0.03]
    python bench/download.py --memory [--symbols 100] [--minutes 57600]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import requests
from common import signed_in_source

from ts_notebook import bulk, frames
from ts_notebook.kernel.session import TSSession
from ts_notebook.launch import free_port


class Remote:
    """The emulator as a process on 127.0.0.1, with ``latency`` seconds on every API request."""

    def __init__(self, latency: float) -> None:
        self.secret, self.port = secrets.token_urlsafe(16), free_port()
        code = (
            "import sys, time\n"
            "from ts_notebook.emulator import Emulator\n"
            f"em = Emulator(client_id='bench', client_secret={self.secret!r}, port={self.port})\n"
            "em.start()\n"
            f"em.api_delay = {latency}\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n"
        )
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == b"ready"
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def loop(session: TSSession, symbols: list[str], days: int) -> pd.DataFrame:
    return pd.concat({s: frames.bars(session, s, barsback=days) for s in symbols}, axis=1)


def by_hand(session: TSSession, symbols: list[str], days: int) -> pd.DataFrame:
    with ThreadPoolExecutor(8) as pool:
        got = dict(zip(symbols, pool.map(lambda s: frames.bars(session, s, barsback=days), symbols), strict=True))
    return pd.concat(got, axis=1)


def download(session: TSSession, symbols: list[str], days: int) -> pd.DataFrame:
    return bulk.download(session, symbols, barsback=days, threads=8, progress=False, cache=False)


def cached(session: TSSession, symbols: list[str], rounds: int) -> tuple[float, float, int]:
    """(cold, again, requests the reruns sent): a fixed past range, into a fresh cache each round."""
    asked: list[int] = []
    session.hooks["response"].append(lambda r, *a, **k: asked.append(1))
    cold, again = [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as folder:
            os.environ["TS_CACHE_DIR"] = folder
            for times in (cold, again):
                asked.clear()
                started = time.perf_counter()
                bulk.download(session, symbols, start="2025-01-02", end="2025-12-31", progress=False)
                times.append(time.perf_counter() - started)
    return statistics.median(cold), statistics.median(again), len(asked)


def tail(session: TSSession, symbols: list[str], days: int) -> int:
    """Requests a rerun of ``barsback`` bars ending now sends: the tail since the last bar kept."""
    asked: list[int] = []
    with tempfile.TemporaryDirectory() as folder:
        os.environ["TS_CACHE_DIR"] = folder
        bulk.download(session, symbols, barsback=days, progress=False)
        session.hooks["response"].append(lambda r, *a, **k: asked.append(1))
        bulk.download(session, symbols, barsback=days, progress=False)
        session.hooks["response"].pop()
    return len(asked)


def resident() -> int:
    """This process's resident memory now, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(way: str, url: str, secret: str, count: int, minutes: int) -> None:
    """In a fresh process: one way's download, then a JSON line of its peak and its frame."""
    em = type("Remote", (), {"url": url, "client_id": "bench"})()
    session = TSSession(lambda: source)
    source = signed_in_source(em, secret)  # type: ignore[arg-type]
    symbols = [f"U{n:03d}" for n in range(1, count + 1)]
    frames.bars(session, symbols[0], unit="Minute", barsback=10)  # every import done, a connection open
    before = resident()
    if way == "ts.download":
        frame = bulk.download(session, symbols, unit="Minute", barsback=minutes, progress=False, cache=False)
    else:
        with ThreadPoolExecutor(8) as pool:
            got = pool.map(lambda s: frames.bars(session, s, unit="Minute", barsback=minutes), symbols)
            frame = pd.concat(dict(zip(symbols, got, strict=True)), axis=1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    print(json.dumps({"peak": peak, "frame": int(frame.memory_usage(deep=True).sum()), "shape": frame.shape}))


def memory(args: argparse.Namespace) -> None:
    remote = Remote(0.0)
    try:
        print(f"{args.symbols} symbols x {args.minutes:,} minute bars, each way in a fresh process:")
        for way in ("by hand (pool + pd.concat)", "ts.download"):
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    way,
                    remote.url,
                    remote.secret,
                    str(args.symbols),
                    str(args.minutes),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            got = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"  {way:<28} frame {got['frame'] / 2**20:7,.0f} MiB {tuple(got['shape'])}, "
                f"peak {got['peak'] / 2**20:7,.0f} MiB over the start: {got['peak'] / got['frame']:4.2f}x the frame"
            )
    finally:
        remote.close()
    print("  (within 2x the frame wanted)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--days", type=int, default=504)
    parser.add_argument("--latency", type=float, default=0.03)
    parser.add_argument("--memory", action="store_true", help="measure the peak memory instead")
    parser.add_argument("--minutes", type=int, default=57_600, help="minute bars per symbol (--memory)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        way, url, secret, count, minutes = args.child
        child(way, url, secret, int(count), int(minutes))
        return
    if args.memory:
        memory(args)
        return
    remote = Remote(args.latency)
    try:
        em = type("Remote", (), {"url": remote.url, "client_id": "bench"})()
        session = TSSession(lambda: source)
        source = signed_in_source(em, remote.secret)  # type: ignore[arg-type]
        symbols = [f"U{n:03d}" for n in range(1, args.symbols + 1)]
        download(session, symbols, args.days)  # the emulator's bars, computed once
        ways = {"sequential ts.bars loop": loop, "ThreadPoolExecutor(8) by hand": by_hand, "ts.download": download}
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.rounds):
            for name, way in ways.items():
                started = time.perf_counter()
                frame = way(session, symbols, args.days)
                times[name].append(time.perf_counter() - started)
                assert frame.shape[0] == args.days, (name, frame.shape)
        cold, again, asked = cached(session, symbols, args.rounds)
        tails = tail(session, symbols, args.days)
    finally:
        remote.close()
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"{args.symbols} symbols x {args.days} daily bars, {args.latency * 1e3:.0f} ms per request, ", end="")
    print(f"{args.rounds} alternating rounds, medians:")
    for name, median in medians.items():
        print(f"  {name:<32} {median:7.2f} s")
    ours = medians["ts.download"]
    print(f"  loop / ts.download:    {medians['sequential ts.bars loop'] / ours:5.1f}x (5 or more wanted)")
    print(f"  by hand / ts.download: {medians['ThreadPoolExecutor(8) by hand'] / ours:5.2f}x (1 or more wanted)")
    print(f"the cache, a fixed past range, {args.rounds} rounds, medians:")
    print(f"  cold (empty cache)               {cold:7.2f} s")
    print(f"  again (every bar kept)           {again:7.3f} s, {asked} API requests")
    print(f"  cold / again:          {cold / again:5.0f}x (20 or more wanted)")
    print(f"a range ending now ({args.days} bars back), again: {tails} API requests for {len(symbols)} symbols")
    print("  (the tail only: one a symbol at the most wanted)")


if __name__ == "__main__":
    requests.packages.urllib3.disable_warnings()  # type: ignore[attr-defined]
    main()

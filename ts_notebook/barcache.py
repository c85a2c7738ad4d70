"""Bars kept on this machine: a rerun of the same cell asks TradeStation only for what is missing.

TradeStation's historical-bar quota page asks clients to keep data locally; this is where. Each
sign-in's bars live in one SQLite file, ``bars-<key>.sqlite`` under the Jupyter data directory's
``ts_notebook/cache`` (or ``TS_CACHE_DIR``): the key is the API (live or simulator) and the
TradeStation user the sign-in is (the id_token's ``sub``), so another sign-in never reads them.
Folder 0700, file 0600, as the token store.

Within one file each (symbol, unit, interval, session template) is a store of its own: the
spans of time it holds every closed bar of, and its bars, columnar: each stretch of time
(:data:`STRETCH`: four weeks of minute bars, four years of others) one row whose blob holds each
field as one array. A rerun reads a universe's bars as a few arrays per symbol, no object per
bar; a bar TradeStation revises replaces the kept one when its stretch is written again.

Why SQLite, not Parquet files: every write is one transaction (a crash leaves the old bars or
the new ones), several processes share a file under SQLite's own lock, a revision rewrites one
stretch, not a file, and it is in the standard library.

Only closed bars are kept (:func:`closed`); a bar still being built is fetched each time. A
file that cannot be read is reported, set aside and started afresh: the bars are fetched
again, never a crash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import struct
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import frames

log = logging.getLogger(__name__)

CACHE_VAR = "TS_CACHE_DIR"
# A blank where a stretch lacks a field another has: what a bar frame makes of a blank.
BLANKS = {"f": float("nan"), "i": 0, "u": 0, "b": False}
SCHEMA = """
CREATE TABLE IF NOT EXISTS stretches (
    symbol TEXT NOT NULL, unit TEXT NOT NULL, interval INTEGER NOT NULL, template TEXT NOT NULL,
    stretch INTEGER NOT NULL, bars INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (symbol, unit, interval, template, stretch)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS spans (
    symbol TEXT NOT NULL, unit TEXT NOT NULL, interval INTEGER NOT NULL, template TEXT NOT NULL,
    first INTEGER NOT NULL, last INTEGER NOT NULL
);
"""
# The file's layout (SQLite's user_version); a file of another is set aside and started afresh.
VERSION = 2
# How long a writer waits for another process's transaction.
BUSY_MS = 30_000
DAY_MS = 86_400_000
# The time one blob holds, by unit: a rerun rewrites at most one stretch (the one holding the
# newest bar), and reads a few blobs per symbol.
STRETCH = {"Minute": 28 * DAY_MS}
STRETCH_OTHERS = 4 * 365 * DAY_MS
MAGIC = b"TSB1"
WHERE = "symbol = ? AND unit = ? AND interval = ? AND template = ?"


def closed(frame: Any) -> Any:
    """Which of a bar frame's bars are closed (a boolean array): the ones kept. A bar still
    being built (``BarStatus`` ``Open``) never is."""
    import numpy as np

    if "BarStatus" not in frame:
        return np.ones(len(frame), dtype=bool)
    return (frame["BarStatus"] == "Closed").to_numpy(dtype=bool, na_value=False)


@dataclass(frozen=True)
class Key:
    """One store: a symbol's bars of one unit, interval and session template."""

    symbol: str
    unit: str
    interval: int
    template: str

    @property
    def values(self) -> tuple[str, str, int, str]:
        return (self.symbol, self.unit, self.interval, self.template)


def folder(environ: dict[str, str] | None = None) -> Path:
    """Where caches live: ``TS_CACHE_DIR``, else ``ts_notebook/cache`` in the Jupyter data dir."""
    env = os.environ if environ is None else environ
    if env.get(CACHE_VAR):
        return Path(env[CACHE_VAR]).expanduser()
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "ts_notebook" / "cache"


def stamp_of(epoch: int) -> str:
    return datetime.fromtimestamp(epoch / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- a stretch's blob: a header naming each field's dtype, then the epochs and each field's array --


def _encode(epochs: Any, columns: dict[str, Any]) -> bytes:
    header = json.dumps([[name, values.dtype.str] for name, values in columns.items()]).encode()
    header += b" " * (-len(header) % 8)  # the arrays start 8-aligned
    parts = [MAGIC, struct.pack("<I", len(header)), header, epochs.astype("<i8").tobytes()]
    return b"".join(parts + [values.tobytes() for values in columns.values()])


class Damaged(sqlite3.DatabaseError):
    """A stretch of bars that cannot be read, in a file that can (SQLite checks no blob)."""


def _decode(np: Any, blob: bytes, count: int) -> tuple[Any, dict[str, Any]]:
    """A stretch's (epochs, columns): read-only views of the blob, no copy.

    Raises:
        Damaged: the blob is not one this version wrote whole.
    """
    try:
        if not isinstance(blob, bytes) or blob[:4] != MAGIC:
            raise ValueError("not this version's layout")
        (size,) = struct.unpack_from("<I", blob, 4)
        at = 8 + size
        epochs = np.frombuffer(blob, "<i8", count, at)
        at += 8 * count
        columns = {}
        for name, dtype in json.loads(blob[8 : 8 + size]):
            columns[str(name)] = np.frombuffer(blob, np.dtype(dtype), count, at)
            at += np.dtype(dtype).itemsize * count
    except (ValueError, TypeError, struct.error, RecursionError) as exc:  # (json's errors are ValueErrors)
        raise Damaged(str(exc)) from None
    if at != len(blob) or (count and not (epochs[1:] > epochs[:-1]).all()):
        raise Damaged("its arrays do not fill it, or its times are out of order")
    return epochs, columns


def _joined(np: Any, parts: list[tuple[Any, dict[str, Any]]]) -> tuple[Any, dict[str, Any]]:
    """Stretches one after the other as one: each field's arrays end to end (a blank where a
    stretch lacks a field another has)."""
    if len(parts) == 1:
        return parts[0]
    names = list(dict.fromkeys(name for _, columns in parts for name in columns))
    joined = {}
    for name in names:
        kind = np.result_type(*(columns[name].dtype for _, columns in parts if name in columns))
        joined[name] = np.concatenate(
            [c[name] if name in c else np.full(len(e), BLANKS[kind.kind], kind) for e, c in parts]
        )
    return np.concatenate([epochs for epochs, _ in parts]), joined


def _ordered(np: Any, epochs: Any, columns: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Bars in time order, each once: a bar there twice is its last copy (a revision replaces)."""
    _, newest_first = np.unique(epochs[::-1], return_index=True)
    take = len(epochs) - 1 - newest_first
    return epochs[take], {name: values[take] for name, values in columns.items()}


def _merged(np: Any, old: tuple[Any, dict[str, Any]], new: tuple[Any, dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
    """``old`` and ``new`` bars as one stretch, a bar in both taken from ``new``."""
    return _ordered(np, *_joined(np, [old, new]))


class BarCache:
    """One sign-in's bars (see the module's docstring).

    Args:
        path: the SQLite file (made 0600, its folder 0700).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = self._open()

    @classmethod
    def for_sign_in(cls, api_url: str, subject: str, where: Path | None = None) -> BarCache:
        """The cache of the sign-in of TradeStation user ``subject`` on ``api_url``."""
        key = hashlib.sha256(f"{api_url.rstrip('/')}|{subject}".encode()).hexdigest()[:20]
        return cls((where or folder()) / f"bars-{key}.sqlite")

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        self._create()
        try:
            db = self._connect()
        except sqlite3.DatabaseError as exc:  # damaged: set it aside, start afresh
            self._set_aside(exc)
            db = self._connect()
        return db

    def _set_aside(self, exc: Exception) -> None:
        aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
        warnings.warn(
            f"ts_notebook: the bar cache {self.path} could not be read ({exc}); it was moved to {aside.name} "
            "and the bars will be fetched again.",
            stacklevel=5,
        )
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self.path}{suffix}").rename(f"{aside}{suffix}")
        self._create()

    def _create(self) -> None:
        """The file, made 0600 (never opened through a link) if it is not there."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_MS / 1000)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, VERSION):
                raise sqlite3.DatabaseError(f"it was written by another version of ts_notebook (layout {version})")
            db.executescript(SCHEMA)
            db.execute(f"PRAGMA user_version = {VERSION}")
            db.execute("SELECT stretch, data FROM stretches LIMIT 1").fetchall()  # damaged: fails here, not later
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # SQLite's lock: one writer at a time, across processes
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def keep(self, key: Key, frame: Any, first: int | None, last: int | None) -> None:
        """Keep the closed bars of ``frame`` (a bar frame, in any order; a bar in it twice, or
        revised since it was kept, is kept as its last copy): its numbers and flags, columnar,
        and note that every closed bar from ``first`` to ``last`` (epoch ms) is now held.

        Raises:
            Damaged: a stretch kept before could not be read (said in a warning); the new bars
                took its place, and the store holds no span whole but this one.
        """
        import numpy as np

        frame = frame[closed(frame)]
        columns = {}
        for name in frame.columns:
            values = frame[name]
            if name != "Epoch" and isinstance(values.dtype, np.dtype) and values.dtype.kind in "iufb":
                columns[name] = values.to_numpy()
        epochs, columns = _ordered(np, frame.index.as_unit("ms").asi8, columns)
        length = STRETCH.get(key.unit, STRETCH_OTHERS)
        stretches = epochs // length
        damaged = False
        with self._writing() as db:
            for stretch in np.unique(stretches):
                mine = stretches == stretch
                new = (epochs[mine], {f: v[mine] for f, v in columns.items()})
                damaged = self._write(db, np, key, int(stretch), new) or damaged
            if first is not None and last is not None and last >= first:
                self._add_span(db, key, first, last)
        if damaged:
            raise Damaged(f"the bars kept for {key.symbol} could not be read")

    def _write(self, db: sqlite3.Connection, np: Any, key: Key, stretch: int, new: tuple[Any, dict[str, Any]]) -> bool:
        """Write ``new`` into its stretch, merged with what it holds; whether that was damaged."""
        held = db.execute(f"SELECT bars, data FROM stretches WHERE {WHERE} AND stretch = ?", (*key.values, stretch))
        found = held.fetchone()
        damaged = False
        try:
            epochs, columns = _merged(np, _decode(np, found[1], found[0]), new) if found else new
        except Damaged:  # the new bars take its place; the store holds no span whole any more
            _warn_damaged([key.symbol])
            db.execute(f"DELETE FROM spans WHERE {WHERE}", key.values)
            (epochs, columns), damaged = new, True
        db.execute(
            "INSERT OR REPLACE INTO stretches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*key.values, stretch, len(epochs), int(epochs[0]), int(epochs[-1]), _encode(epochs, columns)),
        )
        return damaged

    def _add_span(self, db: sqlite3.Connection, key: Key, first: int, last: int) -> None:
        touching = db.execute(  # overlapping or end to end (a gap asked starts the millisecond after a span)
            f"SELECT first, last FROM spans WHERE {WHERE} AND first <= ? AND last >= ?",
            (*key.values, last + 1, first - 1),
        )
        for a, b in touching.fetchall():
            first, last = min(first, a), max(last, b)
        db.execute(f"DELETE FROM spans WHERE {WHERE} AND first >= ? AND last <= ?", (*key.values, first, last))
        db.execute("INSERT INTO spans VALUES (?, ?, ?, ?, ?, ?)", (*key.values, first, last))

    def spans(self, key: Key) -> list[tuple[int, int]]:
        """The spans (epoch ms, inclusive) whose every closed bar is held, in time order."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT first, last FROM spans WHERE {WHERE} ORDER BY first", key.values
            ).fetchall()
        return [(a, b) for a, b in rows]

    def covering(self, keys: list[Key], first: int, last: int) -> list[Key]:
        """The stores among ``keys`` (one unit, interval and template) one of whose spans holds
        every closed bar from ``first`` to ``last``, asked in one query."""
        if not keys:
            return []
        one = keys[0]
        marks = ", ".join("?" * len(keys))
        with self._lock:
            found = self._db.execute(
                f"SELECT DISTINCT symbol FROM spans WHERE symbol IN ({marks}) AND unit = ? AND interval = ? "
                "AND template = ? AND first <= ? AND last >= ?",
                [*(k.symbol for k in keys), one.unit, one.interval, one.template, first, last],
            ).fetchall()
        held = {s for (s,) in found}
        return [k for k in keys if k.symbol in held]

    def _arrays(
        self, keys: list[Key], first: int | None, last: int | None, strict: bool = False
    ) -> dict[str, tuple[Any, dict[str, Any]]]:
        """Each store's (epochs, columns) from ``first`` to ``last`` (None: unbounded), in time
        order: the stretches that reach into the range, in one query, cut to it. A store with a
        stretch that cannot be read is forgotten (its bars will be fetched again) and left out.

        Raises:
            Damaged: with ``strict``, a store was left out so.
        """
        import numpy as np

        one = keys[0]
        marks = ", ".join("?" * len(keys))
        query = (
            f"SELECT symbol, bars, data FROM stretches WHERE symbol IN ({marks}) AND unit = ? AND interval = ? "
            "AND template = ?"
        )
        args: list[Any] = [*(k.symbol for k in keys), one.unit, one.interval, one.template]
        if first is not None:
            query, args = query + " AND last >= ?", [*args, first]
        if last is not None:
            query, args = query + " AND first <= ?", [*args, last]
        with self._lock:
            rows = self._db.execute(query + " ORDER BY symbol, stretch", args).fetchall()
        stretches: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
        damaged: list[str] = []
        for symbol, count, blob in rows:
            try:
                stretches.setdefault(symbol, []).append(_decode(np, blob, count))
            except Damaged:
                damaged.append(symbol)
        if damaged:
            self._forget([Key(s, one.unit, one.interval, one.template) for s in dict.fromkeys(damaged)])
            if strict:
                raise Damaged(f"the bars kept for {', '.join(dict.fromkeys(damaged))} could not be read")
        found = {}
        for symbol, parts in stretches.items():
            if symbol in damaged:
                continue
            epochs, columns = _joined(np, parts)  # (stretches never overlap)
            inside = slice(
                None if first is None else int(np.searchsorted(epochs, first, "left")),
                None if last is None else int(np.searchsorted(epochs, last, "right")),
            )
            # Copies: a frame's columns are its own, writable, never views of a blob.
            found[symbol] = (
                np.array(epochs[inside]),
                {name: np.array(values[inside]) for name, values in columns.items()},
            )
        return found

    def _forget(self, keys: list[Key]) -> None:
        """Forget every bar and span of these stores, said in a warning: they are fetched again."""
        _warn_damaged([k.symbol for k in keys])
        with self._writing() as db:
            for key in keys:
                db.execute(f"DELETE FROM stretches WHERE {WHERE}", key.values)
                db.execute(f"DELETE FROM spans WHERE {WHERE}", key.values)

    def bars(
        self, keys: list[Key], intraday: bool, first: int | None = None, last: int | None = None, strict: bool = False
    ) -> dict[str, Any]:
        """The bars of several symbols (one unit, interval and template) from ``first`` to
        ``last`` (epoch ms, inclusive; None: unbounded) as :class:`ts_notebook.frames.Bars` by
        symbol, read in one query: a download served from the cache costs about as much as one
        symbol's. A symbol with no bar kept there has none."""
        pd = frames._pandas()
        if not keys:
            return {}
        found, index, times, status = {}, None, None, {}
        for symbol, (epochs, columns) in self._arrays(keys, first, last, strict).items():
            if times is None or not (len(times) == len(epochs) and (times == epochs).all()):
                times = epochs  # (a universe's symbols mostly share their times: one index for them)
                index = frames.exchange_index(pd.DatetimeIndex(pd.to_datetime(epochs, unit="ms", utc=True)), intraday)
            if len(epochs) not in status:  # text, never written in place: one column for all of a length
                status[len(epochs)] = pd.array(["Closed"] * len(epochs), dtype=_status_dtype(pd))
            named = {**columns, "BarStatus": status[len(epochs)], "Epoch": epochs}
            found[symbol] = frames.Bars(index, {c: named[c] for c in frames.bar_columns(named)})
        return found

    def frame(
        self, key: Key, intraday: bool, first: int | None = None, last: int | None = None, newest: int | None = None
    ) -> Any:
        """The bars held from ``first`` to ``last`` (epoch ms, inclusive; None: unbounded) as a bar
        frame (:func:`ts_notebook.frames.bar_frame`); only the ``newest`` of them when given."""
        held = self.bars([key], intraday, first, last, strict=True).get(key.symbol)
        if held is None:
            return frames.bar_frame([], intraday)
        frame = held.frame()
        return frame if newest is None else frame.iloc[len(frame) - min(newest, len(frame)) :]

    def read(
        self, key: Key, first: int | None = None, last: int | None = None, newest: int | None = None
    ) -> list[dict[str, Any]]:
        """The bars held from ``first`` to ``last``, each a dict of a bar frame's fields and its
        ``TimeStamp`` (RFC 3339, UTC), in time order; only the ``newest`` of them when given."""
        epochs, columns = self._arrays([key], first, last, strict=True).get(key.symbol, ([], {}))
        start = 0 if newest is None else max(len(epochs) - newest, 0)
        names = list(columns)
        return [
            {
                "TimeStamp": stamp_of(int(epochs[at])),
                **{n: columns[n][at].item() for n in names},
                "Epoch": int(epochs[at]),
                "BarStatus": "Closed",
            }
            for at in range(start, len(epochs))
        ]

    def info(self) -> list[dict[str, Any]]:
        """One row per store: its key, how many bars, and the first and last."""
        with self._lock:
            rows = self._db.execute(
                "SELECT symbol, unit, interval, template, sum(bars), min(first), max(last) FROM stretches "
                "GROUP BY symbol, unit, interval, template ORDER BY symbol, unit, interval, template"
            ).fetchall()
        return [
            {
                "Symbol": s,
                "Unit": u,
                "Interval": i,
                "SessionTemplate": t,
                "Bars": n,
                "First": stamp_of(a),
                "Last": stamp_of(b),
            }
            for s, u, i, t, n, a, b in rows
        ]

    def size(self) -> int:
        """Bytes on disk (the database and its write-ahead log)."""
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())

    def clear(self, symbol: str | None = None) -> int:
        """Forget the bars of ``symbol`` (None: every symbol); returns how many."""
        where, args = ("WHERE symbol = ?", (symbol,)) if symbol else ("", ())
        with self._writing() as db:
            gone = db.execute(f"SELECT coalesce(sum(bars), 0) FROM stretches {where}", args).fetchone()[0]
            db.execute(f"DELETE FROM stretches {where}", args)
            db.execute(f"DELETE FROM spans {where}", args)
        return gone

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _warn_damaged(symbols: list[str]) -> None:
    warnings.warn(
        f"ts_notebook: the bars kept for {', '.join(symbols)} could not be read; they were forgotten and will be "
        "fetched again.",
        stacklevel=6,
    )


def _status_dtype(pd: Any) -> Any:
    """The dtype a bar frame's ``BarStatus`` has when built from a reply (pandas' text)."""
    return pd.Series(["Closed"]).dtype

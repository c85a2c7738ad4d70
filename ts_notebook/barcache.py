"""Bars kept on this machine: a rerun of the same cell asks TradeStation only for what is missing.

TradeStation's historical-bar quota page asks clients to keep data locally; this is where. Each
sign-in's bars live in one SQLite file, ``bars-<key>.sqlite`` under the Jupyter data directory's
``ts_notebook/cache`` (or ``TS_CACHE_DIR``): the key is the API (live or simulator) and the
TradeStation user the sign-in is (the id_token's ``sub``), so another sign-in never reads them.
Folder 0700, file 0600, as the token store.

Why SQLite, not Parquet: a bar is replaced in place when TradeStation revises it (its key is the
symbol, unit, interval, session template and time), every write is one transaction (a crash
leaves the old bars or the new ones), several processes share a file under SQLite's own lock,
and it is in the standard library. Within one file each (symbol, unit, interval, session
template) is a store of its own: its bars, and the spans of time it holds every closed bar of.

Only closed bars are kept (``BarStatus`` ``Closed``); a bar still being built is fetched each
time. A file that cannot be read is reported, set aside and started afresh: the bars are
fetched again, never a crash.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_VAR = "TS_CACHE_DIR"
# The bar fields kept (TradeStation's names), each as a number where it is one (a reply's text
# "88.62" kept as 88.62: read back, a frame is built column-wise, with no text to parse); others
# a reply may carry are not.
FIELDS = (
    "TimeStamp",
    "Open",
    "High",
    "Low",
    "Close",
    "TotalVolume",
    "DownTicks",
    "DownVolume",
    "UpTicks",
    "UpVolume",
    "TotalTicks",
    "OpenInterest",
    "IsEndOfHistory",
    "IsRealtime",
)
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS bars (
    symbol TEXT NOT NULL, unit TEXT NOT NULL, interval INTEGER NOT NULL, template TEXT NOT NULL,
    epoch INTEGER NOT NULL, {", ".join(f'"{f}"' for f in FIELDS)},
    PRIMARY KEY (symbol, unit, interval, template, epoch)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS spans (
    symbol TEXT NOT NULL, unit TEXT NOT NULL, interval INTEGER NOT NULL, template TEXT NOT NULL,
    first INTEGER NOT NULL, last INTEGER NOT NULL
);
"""
# The file's layout (SQLite's user_version); a file of another is set aside and started afresh.
VERSION = 1
# How long a writer waits for another process's transaction.
BUSY_MS = 30_000


NUMBERS = {"Open": float, "High": float, "Low": float, "Close": float, "OpenInterest": float}
NUMBERS.update(dict.fromkeys(("TotalVolume", "DownTicks", "DownVolume", "UpTicks", "UpVolume", "TotalTicks"), int))
FLAGS = ("IsEndOfHistory", "IsRealtime")


def _typed(row: dict[str, Any]) -> list[Any]:
    """A reply's bar as the values kept: numbers as numbers (a blank or a malformed one as NULL,
    as a frame reads a blank), flags as 0 or 1."""
    values = []
    for field in FIELDS:
        value = row.get(field)
        if field in NUMBERS and value is not None:
            try:
                value = NUMBERS[field](float(value)) if NUMBERS[field] is int else float(value)
            except (TypeError, ValueError, OverflowError):
                value = None
        elif field in FLAGS:
            value = 1 if value is True else 0
        values.append(value)
    return values


@dataclass(frozen=True)
class Key:
    """One store: a symbol's bars of one unit, interval and session template."""

    symbol: str
    unit: str
    interval: int
    template: str


def folder(environ: dict[str, str] | None = None) -> Path:
    """Where caches live: ``TS_CACHE_DIR``, else ``ts_notebook/cache`` in the Jupyter data dir."""
    env = os.environ if environ is None else environ
    if env.get(CACHE_VAR):
        return Path(env[CACHE_VAR]).expanduser()
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "ts_notebook" / "cache"


def epoch_of(stamp: str) -> int:
    """TradeStation's ``TimeStamp`` (RFC 3339, UTC) as epoch milliseconds."""
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def stamp_of(epoch: int) -> str:
    return datetime.fromtimestamp(epoch / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _laid_out(pd: Any, rows: list[tuple[Any, ...]], intraday: bool) -> Any:
    """Rows of the bars table as a bar frame, with their ``symbol`` as a column."""
    from . import frames

    names = ["symbol", "unit", "interval", "template", "Epoch", *FIELDS]
    table = pd.DataFrame.from_records(rows, columns=names).drop(columns=names[1:4])
    table["BarStatus"] = "Closed"
    index = pd.DatetimeIndex(pd.to_datetime(table["Epoch"], unit="ms", utc=True))
    table = table[["symbol", *(c for c in frames.bar_columns(table.columns.drop("symbol")) if c != "TimeStamp")]]
    return frames.laid_out(pd, table, index, intraday)


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
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)
        try:
            db = self._connect()
        except sqlite3.DatabaseError as exc:  # damaged: set it aside, start afresh
            aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
            warnings.warn(
                f"ts_notebook: the bar cache {self.path} could not be read ({exc}); it was moved to {aside.name} "
                "and the bars will be fetched again.",
                stacklevel=4,
            )
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{self.path}{suffix}").rename(f"{aside}{suffix}")
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
            os.close(fd)
            db = self._connect()
        return db

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_MS / 1000)
        db.execute("PRAGMA journal_mode=WAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, VERSION):
            db.close()
            raise sqlite3.DatabaseError(f"it was written by another version of ts_notebook (layout {version})")
        db.executescript(SCHEMA)
        db.execute(f"PRAGMA user_version = {VERSION}")
        db.execute("SELECT count(*) FROM bars").fetchone()  # a damaged file fails here, not later
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

    def keep(self, key: Key, rows: list[dict[str, Any]], first: int | None, last: int | None) -> None:
        """Keep the closed bars among ``rows`` (a revised one replaces the one kept), and note
        that every closed bar from ``first`` to ``last`` (epoch ms) is now held."""
        closed = [r for r in rows if r.get("BarStatus", "Closed") == "Closed" and r.get("TimeStamp")]
        values = [
            (key.symbol, key.unit, key.interval, key.template, epoch_of(r["TimeStamp"]), *_typed(r)) for r in closed
        ]
        marks = ", ".join("?" * (5 + len(FIELDS)))
        with self._writing() as db:
            db.executemany(f"INSERT OR REPLACE INTO bars VALUES ({marks})", values)
            if first is not None and last is not None and last >= first:
                self._add_span(db, key, first, last)

    def _add_span(self, db: sqlite3.Connection, key: Key, first: int, last: int) -> None:
        where = "symbol = ? AND unit = ? AND interval = ? AND template = ?"
        k = (key.symbol, key.unit, key.interval, key.template)
        touching = db.execute(
            f"SELECT first, last FROM spans WHERE {where} AND first <= ? AND last >= ?", (*k, last, first)
        )
        for a, b in touching.fetchall():
            first, last = min(first, a), max(last, b)
        db.execute(f"DELETE FROM spans WHERE {where} AND first >= ? AND last <= ?", (*k, first, last))
        db.execute("INSERT INTO spans VALUES (?, ?, ?, ?, ?, ?)", (*k, first, last))

    def spans(self, key: Key) -> list[tuple[int, int]]:
        """The spans (epoch ms, inclusive) whose every closed bar is held, in time order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT first, last FROM spans WHERE symbol = ? AND unit = ? AND interval = ? AND template = ? "
                "ORDER BY first",
                (key.symbol, key.unit, key.interval, key.template),
            ).fetchall()
        return [(a, b) for a, b in rows]

    def read(
        self, key: Key, first: int | None = None, last: int | None = None, newest: int | None = None
    ) -> list[dict[str, Any]]:
        """The bars held from ``first`` to ``last`` (epoch ms, inclusive; None: unbounded), as
        TradeStation sent them (numbers as numbers), in time order; only the ``newest`` of them
        when given."""
        found = self._select(key, first, last, newest)
        return [{**dict(zip(FIELDS, row[5:], strict=True)), "Epoch": row[4], "BarStatus": "Closed"} for row in found]

    def _select(self, key: Key, first: int | None, last: int | None, newest: int | None) -> list[tuple[Any, ...]]:
        query = "SELECT * FROM bars WHERE symbol = ? AND unit = ? AND interval = ? AND template = ?"
        args: list[Any] = [key.symbol, key.unit, key.interval, key.template]
        if first is not None:
            query, args = query + " AND epoch >= ?", [*args, first]
        if last is not None:
            query, args = query + " AND epoch <= ?", [*args, last]
        order = " ORDER BY epoch" if newest is None else f" ORDER BY epoch DESC LIMIT {int(newest)}"
        with self._lock:
            found = self._db.execute(query + order, args).fetchall()
        if newest is not None:
            found.reverse()
        return found

    def frame(
        self, key: Key, intraday: bool, first: int | None = None, last: int | None = None, newest: int | None = None
    ) -> Any:
        """:meth:`read`, as a bar frame (:func:`ts_notebook.frames.bar_frame`), built column-wise."""
        from . import frames

        pd = frames._pandas()
        rows = self._select(key, first, last, newest)
        if not rows:
            return frames.bar_frame([], intraday)
        return _laid_out(pd, rows, intraday).drop(columns="symbol")

    def covered(self, key: Key, first: int, last: int) -> bool:
        """Whether one span holds every closed bar from ``first`` to ``last``."""
        return any(a <= first and last <= b for a, b in self.spans(key))

    def frames(self, keys: list[Key], intraday: bool, first: int, last: int) -> dict[str, Any]:
        """The bars from ``first`` to ``last`` of several symbols (one unit, interval and
        template), in one query and one frame split by symbol: a download served from the
        cache costs about as much as one symbol's, not one per symbol."""
        from . import frames

        pd = frames._pandas()
        if not keys:
            return {}
        one = keys[0]
        marks = ", ".join("?" * len(keys))
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM bars WHERE symbol IN ({marks}) AND unit = ? AND interval = ? AND template = ? "
                "AND epoch >= ? AND epoch <= ? ORDER BY symbol, epoch",
                [*(k.symbol for k in keys), one.unit, one.interval, one.template, first, last],
            ).fetchall()
        found = {}
        if rows:
            table = _laid_out(pd, rows, intraday)
            for symbol, part in table.groupby("symbol", sort=False):
                found[symbol] = part.drop(columns="symbol")
        empty = [k.symbol for k in keys if k.symbol not in found]  # held: no bar in that range
        if empty:
            none = frames.bar_frame([], intraday)
            found.update({symbol: none.copy() for symbol in empty})
        return found

    def info(self) -> list[dict[str, Any]]:
        """One row per store: its key, how many bars, and the first and last."""
        with self._lock:
            rows = self._db.execute(
                "SELECT symbol, unit, interval, template, count(*), min(epoch), max(epoch) FROM bars "
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
            gone = db.execute(f"DELETE FROM bars {where}", args).rowcount
            db.execute(f"DELETE FROM spans {where}", args)
        return gone

    def close(self) -> None:
        with self._lock:
            self._db.close()

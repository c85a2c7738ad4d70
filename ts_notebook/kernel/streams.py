"""TradeStation's streams as an iterator of dicts that outlives tokens, drops and silence.

A stream is a chunked reply of newline-delimited JSON objects whose boundaries have nothing to
do with the chunks'. :class:`JSONLines` splits bytes into objects whatever the chunking
(mid-object, several per chunk, a UTF-8 character cut in two). :class:`Stream` reads large
chunks, swallows heartbeats, notes ``EndSnapshot``, and opens the stream again (with the
token current then) after ``GoAway``, a dropped connection or a silence longer than a few
heartbeats, backing off while it keeps failing. Errors the stream sends raise
:class:`APIError`, except one about a single symbol, which is a warning.
"""

from __future__ import annotations

import itertools
import json
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import requests

from ..errors import TSError
from .replies import APIError, endpoint

# TradeStation sends a heartbeat after 5 s without data; this much silence means a dead stream.
SILENCE = 15.0
# Consecutive failed (re)connections before the stream gives up and raises.
MAX_RECONNECTS = 5
# Errors inside a stream that mean "open it again" rather than "stop": at once, or after a while.
REOPEN_NOW = frozenset({"GoAway"})
REOPEN_LATER = frozenset({"InternalServerError"})
STREAM_HINTS = {
    "DualLogon": "Another session of this account opened the same stream, and TradeStation allows one. Close the "
    "other one, then start this stream again",
    "BadRequest": "Check the stream's symbols and parameters against TradeStation's API reference",
}


try:  # several times faster than the standard library on stream-sized objects (bench/streams.py)
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson is a dependency; the standard parser also works
    _loads = json.loads


class StreamFailed(TSError, requests.ConnectionError):
    """The stream kept failing to open or dropping; the message says what to do."""


class JSONLines:
    """Bytes in, JSON objects out: a sans-I/O splitter of newline-delimited JSON.

    A line that is not JSON is skipped with a warning (its neighbours are kept); a line longer
    than ``MAX_LINE`` bytes is refused (ValueError), never buffered without end.
    """

    MAX_LINE = 16 * 1024 * 1024

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> list[Any]:
        """The objects completed by ``data`` (the unfinished tail waits for the next feed)."""
        lines = (self._rest + data).split(b"\n")
        self._rest = lines.pop()
        if len(self._rest) > self.MAX_LINE:
            self._rest = b""
            raise ValueError(f"a stream line longer than {self.MAX_LINE} bytes")
        out: list[Any] = []
        for line in lines:
            if line.strip():
                out.extend(_objects(line))
        return out

    def close(self) -> list[Any]:
        """The last object, when the reply ended without a newline after it."""
        rest, self._rest = self._rest, b""
        return _objects(rest) if rest.strip() else []


def _objects(line: bytes) -> list[Any]:
    """The objects on one line: one, or (from a server that omits newlines) several in a row;
    none, with a warning, when the line is not JSON."""
    try:
        return [_loads(line)]
    except json.JSONDecodeError:  # orjson's error is a subclass
        text, decoder, out, at = line.decode("utf-8", errors="replace"), json.JSONDecoder(), [], 0
        try:
            while at < len(text):
                while at < len(text) and text[at].isspace():
                    at += 1
                if at < len(text):
                    obj, at = decoder.raw_decode(text, at)
                    out.append(obj)
        except (ValueError, RecursionError):
            warnings.warn(f"TradeStation stream: skipped a line that is not JSON ({len(line)} bytes)", stacklevel=2)
        return out


def backoff(failures: int) -> float:
    """Seconds before reconnecting after ``failures`` failures in a row: 0.5 s doubling, 15 s at most."""
    return min(15.0, 0.5 * 2 ** (failures - 1))


class Stream:
    """An open TradeStation stream: iterate it for dicts. ``close()`` (from any thread), leaving
    a ``with`` block, or Ctrl-C ends it and releases its connection; so does ``break`` out of
    ``for q in ts.stream(...)``, where nothing else holds the stream (one kept in a variable is
    released when closed or dropped).

    Args:
        opener: opens the stream once (``session.request("GET", path, stream=True, ...)``),
            with the token current at that moment.
        heartbeats: also yield ``{"Heartbeat": ...}`` objects (swallowed by default).
        markers: also yield ``{"StreamStatus": "EndSnapshot"}`` (``snapshot_done`` says it
            either way).
        silence: seconds without a byte after which the stream is opened again.
        max_reconnects: failed (re)connections in a row before giving up.

    Attributes:
        snapshot_done: True once the server said the snapshot is complete (the current
            connection's; it starts False again after a reconnection).
        reconnects: how many times the stream was opened again.
    """

    def __init__(self, opener: Callable[[float], requests.Response], **options: Any) -> None:
        self._reader = _Reader(opener, **options)  # the options above, checked there
        self._items = self._reader.run()

    @property
    def snapshot_done(self) -> bool:
        return self._reader.snapshot_done

    @property
    def reconnects(self) -> int:
        return self._reader.reconnects

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        return next(self._items)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the stream and release its connection; safe from any thread."""
        self._reader.close()

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called (or the iteration ended)."""
        return self._reader.closed


class _Reader:
    """The connection side of a ``Stream``: opens, reads, reopens and closes. The stream holds
    it and its loop; it never holds the stream, so a stream nobody holds any more (``break``
    out of ``for q in ts.stream(...)``) is freed at once, and its loop's ``finally`` lets go
    of the connection (a cycle would wait for the garbage collector)."""

    def __init__(
        self,
        opener: Callable[[float], requests.Response],
        heartbeats: bool = False,
        markers: bool = False,
        silence: float = SILENCE,
        max_reconnects: int = MAX_RECONNECTS,
    ) -> None:
        self._opener = opener
        self.heartbeats, self.markers, self.silence, self.max_reconnects = heartbeats, markers, silence, max_reconnects
        self.snapshot_done = False
        self.reconnects = 0
        self._closed = threading.Event()
        self._resp: requests.Response | None = None

    def close(self) -> None:
        """End the stream and release its connection; safe from any thread."""
        self._closed.set()
        resp = self._resp
        if resp is not None:
            try:
                resp.raw.shutdown()  # wakes a read blocked in another thread
            except Exception:  # already closed, or a raw without shutdown
                pass
            resp.close()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def run(self) -> Iterator[dict[str, Any]]:
        """The stream's objects, reconnecting as needed, until closed or failed for good."""
        failures = 0
        try:
            while not self._closed.is_set():
                try:
                    resp = self._open()
                except APIError as exc:
                    if exc.status < 500 and exc.status != 429:
                        raise  # refused (scope, symbol, sign-in): opening again cannot help
                    failures = self._failed(failures)
                    continue
                except requests.RequestException:
                    if self._closed.is_set():
                        return
                    failures = self._failed(failures)
                    continue
                gave = False
                try:
                    for item in self._read(resp):
                        failures, gave = 0, True
                        yield item
                    if not gave and not self._closed.is_set():
                        failures = self._failed(failures)  # ended with nothing: never a busy loop
                except APIError:
                    raise  # an error the stream sent that ends it
                except (requests.RequestException, OSError, ValueError, RecursionError):
                    # Dropped, silent too long, or cut mid-object: open it again.
                    if self._closed.is_set():
                        return
                    failures = self._failed(failures)
                finally:
                    resp.close()
                if not self._closed.is_set():
                    self.reconnects += 1
        finally:
            self._closed.set()
            if self._resp is not None:
                self._resp.close()

    def _open(self) -> requests.Response:
        self.snapshot_done = False
        resp = self._opener(self.silence)
        self._resp = resp
        if self._closed.is_set():  # closed while connecting: this reply is nobody's
            resp.close()
            raise requests.ConnectionError("closed")
        if resp.status_code >= 400:
            try:
                resp.raise_for_status()  # an APIError that says what to do
            finally:
                resp.close()
        return resp

    def _failed(self, failures: int) -> int:
        failures += 1
        if failures > self.max_reconnects:
            raise StreamFailed(
                f"The stream failed {failures} times in a row (dropped, or silent for {self.silence:.0f} s); "
                "check the network, then start it again"
            )
        self._closed.wait(backoff(failures))  # close() ends the wait at once
        return failures

    def _read(self, resp: requests.Response) -> Iterator[dict[str, Any]]:
        """The objects of one connection, until it ends, says GoAway, or fails."""
        lines = JSONLines()
        for chunk in itertools.chain(resp.iter_content(chunk_size=None), [None]):  # None: the reply ended
            if self._closed.is_set():
                return
            for obj in lines.feed(chunk) if chunk is not None else lines.close():
                if not isinstance(obj, dict):
                    continue
                if "Heartbeat" in obj:
                    if self.heartbeats:
                        yield obj
                    continue
                status = obj.get("StreamStatus")
                if status == "EndSnapshot":
                    self.snapshot_done = True
                    if self.markers:
                        yield obj
                    continue
                if status == "GoAway":
                    return  # the server is about to end it: open a new one
                if "Error" in obj:
                    if self._stream_error(obj, resp):
                        return
                    continue
                yield obj

    def _stream_error(self, obj: Mapping[str, Any], resp: requests.Response) -> bool:
        """Handle an error the stream sent: True to open the stream again; raises for errors
        that end it; a warning for one symbol's error (the others keep streaming)."""
        error, message = str(obj.get("Error")), str(obj.get("Message", ""))
        if error in REOPEN_NOW:
            return True
        if error in REOPEN_LATER:  # as a dropped connection: backing off while it repeats
            raise requests.ConnectionError(f"the stream reported {error}")
        if obj.get("Symbol"):
            warnings.warn(f"TradeStation stream: {obj['Symbol']}: {error} ({message})", stacklevel=4)
            return False
        hint = STREAM_HINTS.get(error, "Start the stream again; if it keeps failing, check TradeStation's status")
        raise APIError(resp.status_code, error, message, endpoint(resp), hint, resp)


def open_stream(
    session: requests.Session, path: str, params: Mapping[str, Any] | None = None, **options: Any
) -> Stream:
    """A :class:`Stream` of ``path`` (relative to the API base) through ``session``."""

    def opener(silence: float) -> requests.Response:
        return session.request("GET", path, params=dict(params or {}), stream=True, timeout=(10.0, silence))

    return Stream(opener, **options)

"""TradeStation's streams as an iterator of dicts that outlives tokens, drops and silence.

A stream is a chunked reply of newline-delimited JSON objects whose boundaries have nothing to
do with the chunks'. :class:`JSONLines` splits bytes into objects whatever the chunking
(mid-object, several per chunk, a UTF-8 character cut in two). :class:`Stream` reads large
chunks, swallows heartbeats, notes ``EndSnapshot``, and opens the stream again (with the
token current then) after ``GoAway``, a dropped connection, a refusal worth repeating (429,
5xx) or a silence longer than a few heartbeats, backing off while it keeps failing: its
reconnections are its only retries (one request each, never the session's retries as well).
Errors the stream sends raise :class:`APIError`, except one about a single symbol, which is a
warning.
"""

from __future__ import annotations

import itertools
import json
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import requests

from ..backoff import delay
from ..errors import TSError
from .replies import APIError, endpoint, retry_wait

# TradeStation sends a heartbeat after 5 s without data; this much silence means a dead stream.
SILENCE = 15.0
# Consecutive failed (re)connections before the stream gives up and raises.
MAX_RECONNECTS = 5
# The wait before a reconnection after a failure: this, doubling while it keeps failing, at most
# RECONNECT_MOST. A reply that names its wait (Retry-After, the rate-limit reset) is waited out
# instead, when that is no longer than the stream's max_wait.
RECONNECT_FIRST, RECONNECT_MOST = 0.5, 15.0
# Errors inside a stream that mean "open it again" rather than "stop": at once, or after a while.
REOPEN_NOW = frozenset({"GoAway"})
REOPEN_LATER = frozenset({"InternalServerError"})
STREAM_HINTS = {
    "DualLogon": "Another session of this account opened the same stream, and TradeStation allows one. Close the "
    "other one, then start this stream again",
    "BadRequest": "Check the stream's symbols and parameters against TradeStation's API reference",
}


def _json_parser() -> Callable[[bytes], Any]:
    # orjson is several times faster than the standard library on stream-sized objects
    # (bench/streams.py); imported with the first stream, so that `import ts_notebook` is not
    # slower for it.
    try:
        from orjson import loads
    except ImportError:  # pragma: no cover - orjson is a dependency; the standard parser also works
        return json.loads
    return loads


class StreamFailed(TSError, requests.ConnectionError):
    """The stream kept failing to open or dropping; the message says what to do."""


class JSONLines:
    """Bytes in, JSON objects out: a sans-I/O splitter of newline-delimited JSON.

    A line that is not JSON is skipped with a warning (its neighbours are kept); a line longer
    than ``MAX_LINE`` bytes is refused (ValueError), never buffered without end.
    """

    MAX_LINE = 16 * 1024 * 1024

    def __init__(self) -> None:
        self._rest = bytearray()  # the unfinished line: grows in place, even a byte at a time
        self._loads = _json_parser()

    def feed(self, data: bytes) -> list[Any]:
        """The objects completed by ``data`` (the unfinished tail waits for the next feed)."""
        end = data.rfind(b"\n")
        if end < 0:
            self._rest += data
            self._check_rest()
            return []
        block = self._rest + data[:end] if self._rest else data[:end]
        self._rest = bytearray(data[end + 1 :])
        self._check_rest()
        # Every complete line in one parse: as a JSON array, the newlines made commas (a raw
        # newline cannot be inside a JSON string, nor a byte of a UTF-8 character). A block
        # that does not parse so (a blank or broken line) is read again line by line.
        try:
            return self._loads(b"[" + block.replace(b"\n", b",") + b"]")
        except (ValueError, RecursionError):  # orjson's JSONDecodeError is a ValueError
            out: list[Any] = []
            for line in block.split(b"\n"):
                if line.strip():
                    out.extend(_objects(line, self._loads))
            return out

    def close(self) -> list[Any]:
        """The last object, when the reply ended without a newline after it."""
        rest, self._rest = bytes(self._rest), bytearray()
        return _objects(rest, self._loads) if rest.strip() else []

    def _check_rest(self) -> None:
        if len(self._rest) > self.MAX_LINE:
            self._rest = bytearray()
            raise ValueError(f"a stream line longer than {self.MAX_LINE} bytes")


def _objects(line: bytes, loads: Callable[[bytes], Any]) -> list[Any]:
    """The objects on one line: one, or (from a server that omits newlines) several in a row;
    none, with a warning, when the line is not JSON."""
    try:
        return [loads(line)]
    except (ValueError, RecursionError):
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


class Stream:
    """An open TradeStation stream: iterate it for dicts. ``close()`` (from any thread), leaving
    a ``with`` block, or Ctrl-C ends it and releases its connection; so does ``break`` out of
    ``for q in ts.stream(...)``, where nothing else holds the stream (one kept in a variable is
    released when closed or dropped).

    Args:
        opener: opens the stream once, with one request (and the token current at that
            moment): given the silence, it returns the reply, whatever its status.
        heartbeats: also yield ``{"Heartbeat": ...}`` objects (swallowed by default).
        markers: also yield ``{"StreamStatus": "EndSnapshot"}`` (``snapshot_done`` says it
            either way).
        silence: seconds without a byte after which the stream is opened again.
        max_reconnects: failed (re)connections in a row before giving up.
        max_wait: the longest wait a refusal may name (``Retry-After``, the rate-limit reset)
            that is waited out before opening again; a longer one, or none, waits as after a
            drop. ``ts.session`` passes its ``retry_max_wait``.

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
        return self._items  # the loop itself: a for loop then costs no call of ours per item

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
        max_wait: float = 0.0,
    ) -> None:
        self._opener = opener
        self.heartbeats, self.markers, self.silence = heartbeats, markers, silence
        self.max_reconnects, self.max_wait = max_reconnects, max_wait
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
                    failures = self._failed(failures, exc, self._asked_wait(exc.response))
                    continue
                except requests.RequestException as exc:
                    if self._closed.is_set():
                        return
                    failures = self._failed(failures, exc)
                    continue
                try:
                    items = self._read(resp)
                    first = next(items, None)
                    if first is not None:
                        failures = 0
                        yield first
                        yield from items
                    elif not self._closed.is_set():
                        failures = self._failed(failures, None)  # ended with nothing: never a busy loop
                except APIError:
                    raise  # an error the stream sent that ends it
                except (requests.RequestException, OSError, ValueError, RecursionError) as exc:
                    # Dropped, silent too long, or cut mid-object: open it again.
                    if self._closed.is_set():
                        return
                    failures = self._failed(failures, exc)
                except Exception:
                    if self._closed.is_set():
                        return  # a read cut short by close() from another thread, however urllib3 says it
                    raise
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

    def _asked_wait(self, resp: requests.Response | None) -> float | None:
        """The wait a refusal named, when it is one to wait out (at most ``max_wait``)."""
        asked = retry_wait(resp) if resp is not None else None
        return asked if asked and asked <= self.max_wait else None

    def _failed(self, failures: int, exc: BaseException | None, wait: float | None = None) -> int:
        """One more failure in a row (``exc``, or None for a reply that ended with nothing):
        wait before the next try, ``wait`` or the backoff; raise once there were too many."""
        failures += 1
        if failures > self.max_reconnects:
            if isinstance(exc, APIError):
                why, then = f"{exc.status} {exc.error} on {exc.endpoint}", exc.hint
            else:
                why, then = f"dropped, or silent for {self.silence:.0f} s", "Check the network, then start it again"
            raise StreamFailed(f"The stream failed {failures} times in a row ({why}). {then}") from exc
        self._closed.wait(wait or delay(failures, RECONNECT_FIRST, RECONNECT_MOST))  # close() ends it at once
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

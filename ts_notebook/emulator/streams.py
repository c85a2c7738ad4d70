"""TradeStation's streams, emulated: chunked newline-delimited JSON with a snapshot, an
``EndSnapshot``, updates, heartbeats when idle, ``GoAway`` after a configurable count, random
re-chunking (boundaries mid-object and mid-character), and scripted drops, silences and errors.
Deterministic: the same symbols and settings give the same bytes.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from typing import Any

from tornado.iostream import StreamClosedError

from .api import ApiHandler
from .market import quote_for

CONTENT_TYPE = "application/vnd.tradestation.streams.v2+json"


def quote_updates(symbols: list[str]) -> Iterator[dict[str, Any]]:
    """Endless quote changes for ``symbols``, the same for the same symbols."""
    rng = random.Random(",".join(symbols))
    last = {s: float(quote_for(s)["Last"]) for s in symbols}
    while True:
        symbol = rng.choice(symbols)
        last[symbol] = max(0.01, last[symbol] + rng.choice((-1, 1)) * rng.randint(1, 25) / 100)
        yield {"Symbol": symbol, "Last": f"{last[symbol]:.2f}", "TradeTime": time.strftime("%Y-%m-%dT%H:%M:%SZ")}


def bar_updates(symbol: str, barsback: int) -> tuple[list[dict[str, Any]], Iterator[dict[str, Any]]]:
    """A snapshot of ``barsback`` closed minute bars, then endless updates of the open one."""
    rng = random.Random(symbol)
    price, start = float(quote_for(symbol)["Last"]), int(time.time() // 60 * 60) - 60 * barsback

    def bar(i: int, status: str) -> dict[str, Any]:
        nonlocal price
        o = price
        c = max(0.01, o + rng.randint(-50, 50) / 100)
        price = c
        epoch = start + 60 * i
        return {
            "Open": f"{o:.2f}",
            "High": f"{max(o, c) + 0.05:.2f}",
            "Low": f"{min(o, c) - 0.05:.2f}",
            "Close": f"{c:.2f}",
            "TotalVolume": str(rng.randint(1_000, 90_000)),
            "Epoch": epoch * 1000,
            "TimeStamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)),
            "BarStatus": status,
            "IsRealtime": status == "Open",
            "IsEndOfHistory": i == barsback - 1,
        }

    snapshot = [bar(i, "Closed") for i in range(barsback)]

    def updates() -> Iterator[dict[str, Any]]:
        while True:
            yield bar(barsback, "Open")

    return snapshot, updates()


class StreamHandler(ApiHandler):
    """``GET (sim/)v3/marketdata/stream/quotes/{symbols}`` and ``.../barcharts/{symbol}``."""

    _gone = False

    async def get(self, sim: str | None, kind: str, what: str) -> None:  # type: ignore[override]
        route = f"marketdata/stream/{kind}/{what}"
        token = self.bearer_token()
        record = self.state.access_record(token) if token else None
        if record is None:
            self._reply(401, {"Error": "Unauthorized", "Message": "Access token is missing, invalid or expired"}, token)
            return
        if not await self._admitted(route, record, token):  # type: ignore[arg-type]
            return
        symbols = [s for s in what.split(",") if s]
        if not symbols or (kind == "barcharts" and len(symbols) != 1):
            self._reply(400, {"Error": "BadRequest", "Message": "Give one or more symbols (one for bars)"}, token)
            return
        self.state.record_api_call(self.request.path, 200, token)
        if kind == "quotes":
            snapshot = [{**quote_for(s), "Description": f"{s} Ünïcødé ☃ Corp"} for s in symbols]
            updates = quote_updates(symbols)
        else:
            snapshot, updates = bar_updates(symbols[0], int(self.get_query_argument("barsback", "10")))
        self.state.streams_open += 1
        self.state.streams_opened += 1
        try:
            await self._serve([*snapshot, {"StreamStatus": "EndSnapshot"}], updates)
        finally:
            self.state.streams_open -= 1

    def on_connection_close(self) -> None:
        self._gone = True

    async def _serve(self, first: list[dict[str, Any]], updates: Iterator[dict[str, Any]]) -> None:
        faults = self.state.faults
        settings, brk = faults.settings, faults.streams.take()
        rng = random.Random(settings.stream_rechunk_seed) if settings.stream_rechunk_seed is not None else None
        self.set_header("Content-Type", CONTENT_TYPE)
        sent, idle, beats = 0, 0.0, 0
        try:
            await self.flush()  # the status and headers at once, as a streaming server sends them
        except StreamClosedError:
            return
        pending = list(first)
        try:
            while not self._gone:
                if brk is not None and sent >= brk.after:
                    if brk.symbol:  # one symbol's error: the others keep streaming
                        await self._send([{"Symbol": brk.symbol, "Error": brk.error, "Message": "Invalid symbol"}], rng)
                        brk = None
                        continue
                    await self._break(brk)
                    return
                if settings.stream_goaway_after is not None and sent >= settings.stream_goaway_after:
                    await self._send([{"StreamStatus": "GoAway"}], rng)
                    await self._idle(30.0)  # as TradeStation: the end comes later; a client opens a new one now
                    break
                if pending:
                    await self._send([pending.pop(0)], rng)
                    sent += 1
                    continue
                step = min(settings.stream_interval, settings.stream_heartbeat)
                await self._idle(step)
                idle += step
                if settings.stream_interval <= settings.stream_heartbeat or idle >= settings.stream_interval:
                    pending.append(next(updates))
                    idle = 0.0
                elif idle >= settings.stream_heartbeat * (beats + 1):
                    beats += 1
                    await self._send([{"Heartbeat": beats, "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ")}], rng)
        except StreamClosedError:
            self._gone = True
        self._finish_quietly()

    def _finish_quietly(self) -> None:
        # On a connection the client (or a scripted drop) closed there is nothing left to send.
        if not self._finished:
            try:
                self.finish()
            except (StreamClosedError, RuntimeError):
                pass

    async def _break(self, brk: Any) -> None:
        if brk.kind == "error":
            await self._send([{"Error": brk.error, "Message": f"The emulator was told to send {brk.error}"}], None)
            self.finish()
        elif brk.kind == "drop":
            self._gone = True
            self.request.connection.stream.close()  # type: ignore[union-attr]
            self._finish_quietly()
        else:  # silent: keep the connection, send nothing, until the client gives up
            await self._idle(float("inf"))

    async def _idle(self, seconds: float) -> None:
        """Wait ``seconds``, or until the client has gone (noticed within 50 ms)."""
        end = time.monotonic() + seconds
        while not self._gone and time.monotonic() < end:
            await asyncio.sleep(min(0.05, max(0.0, end - time.monotonic())))

    async def _send(self, objects: list[dict[str, Any]], rng: random.Random | None) -> None:
        data = b"".join(json.dumps(o, ensure_ascii=False).encode("utf-8") + b"\n" for o in objects)
        if rng is None:
            self.write(data)
            await self.flush()
            return
        at = 0
        while at < len(data):  # chunks cut anywhere: mid-object, mid-character
            size = rng.randint(1, 48)
            self.write(data[at : at + size])
            await self.flush()
            at += size

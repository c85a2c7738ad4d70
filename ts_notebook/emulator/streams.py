"""TradeStation's streams, emulated: chunked newline-delimited JSON with a snapshot, an
``EndSnapshot``, updates, heartbeats when idle, ``GoAway`` after a configurable count, random
re-chunking (boundaries mid-object and mid-character), and scripted drops, silences and errors.
Quotes and bars are the market's (:mod:`.market`) at each message's moment; with the market's
clock fixed, the same symbols and settings give the same bytes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from tornado.iostream import StreamClosedError

from . import market, options, prices
from .api import ApiHandler
from .prices import known

CONTENT_TYPE = "application/vnd.tradestation.streams.v2+json"


def moments(frozen: datetime | None) -> Iterator[datetime]:
    """The moments a stream shows, one per message: the wall clock's, or from a fixed clock
    on, a second further each (so such a stream is the same every time)."""
    for n in itertools.count():
        yield market.market_now(None) if frozen is None else frozen + timedelta(seconds=n)


def refusal(symbol: str) -> dict[str, Any]:
    """What a stream sends in place of a symbol TradeStation does not know."""
    return {"Symbol": symbol, "Error": "InvalidSymbol", "Message": "Invalid symbol"}


def quote_updates(symbols: list[str], at: Iterator[datetime]) -> Iterator[dict[str, Any]]:
    """Quotes of the known ``symbols``, one symbol (picked the same way for the same symbols)
    at each next moment; none when none is known."""
    rng, quoted = random.Random(",".join(symbols)), [s for s in symbols if known(s)]
    while quoted:
        yield market.quote_for(rng.choice(quoted), next(at))


def bar_updates(symbol: str, params: dict[str, str], at: Iterator[datetime]) -> Iterator[dict[str, Any]]:
    """The latest bar at each next moment; a bar that ended since the last update is sent once
    more, closed, before the next one."""
    last: dict[str, Any] | None = None
    while True:
        now = next(at)
        bar = market.barchart(symbol, {**params, "barsback": "1"}, now)["Bars"][-1]
        if last is not None and last["BarStatus"] == "Open" and last["TimeStamp"] != bar["TimeStamp"]:
            yield market.barchart(symbol, {**params, "barsback": "1", "lastdate": last["TimeStamp"]}, now)["Bars"][-1]
        last = bar
        yield bar


class StreamHandler(ApiHandler):
    """``GET (sim/)v3/marketdata/stream/quotes/{symbols}``, ``.../barcharts/{symbol}`` and
    ``.../options/chains/{underlying}`` (its snapshot only: the chain as it stands)."""

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
        at = moments(self.state.faults.settings.market_clock)
        if kind == "options/chains":
            now = next(at)
            try:
                proximity = self.get_query_argument("strikeProximity", "5")
                given = self.get_query_argument("expiration", None)
                listed = options.expirations(symbols[0], now.astimezone(prices.EXCHANGE).date())
                expiration = options.parse_expiration(given) if given else listed[0][0]
                snapshot = options.chain(symbols[0], expiration, int(proximity), now)
            except ValueError as exc:  # NoOptions too: TradeStation sends the error in the stream
                snapshot = [
                    {"Error": "InvalidSymbol" if "No options for" in str(exc) else "BadRequest", "Message": str(exc)}
                ]
            updates = iter(())
        elif kind == "quotes":
            now = next(at)
            snapshot = [
                {**market.quote_for(s, now), "Description": f"{s} Ünïcødé ☃ Corp"} if known(s) else refusal(s)
                for s in symbols
            ]
            updates = quote_updates(symbols, at)
        else:
            params = {
                k: self.get_query_argument(k)
                for k in ("unit", "interval", "sessiontemplate")
                if k in self.request.arguments
            }
            params["barsback"] = self.get_query_argument("barsback", "10")
            try:
                snapshot = market.barchart(symbols[0], params, next(at))["Bars"] if known(symbols[0]) else []
            except market.BadRequest as exc:
                self._reply(400, {"Error": "BadRequest", "Message": str(exc)}, token)
                return
            if snapshot:
                snapshot[-1] = {**snapshot[-1], "IsEndOfHistory": True}
                updates = bar_updates(symbols[0], params, at)
            else:
                snapshot, updates = [refusal(symbols[0])], iter(())
        self.state.record_api_call(self.request.path, 200, token)
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
        sent, idle, quiet, beats = 0, 0.0, 0.0, 0
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
                idle, quiet = idle + step, quiet + step
                if settings.stream_interval <= settings.stream_heartbeat or idle >= settings.stream_interval:
                    idle = 0.0
                    update = next(updates, None)
                    if update is not None:
                        pending.append(update)
                        quiet = 0.0
                        continue
                if quiet >= settings.stream_heartbeat:  # nothing said for a while: say so
                    beats, quiet = beats + 1, 0.0
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

"""Interrupting a notebook cell (the kernel's Interrupt, as the toolbar's stop button sends it)
while it reads a stream, or runs a foreground ts.watch, stops it and lets go of the stream."""

from __future__ import annotations

import asyncio

import pytest

from ...parts.kernels import new_kernel
from ...parts.signin import sign_in
from ...parts.waiting import eventually

LOOP = 'n = 0\nfor q in ts.stream("marketdata/stream/quotes/MSFT,AAPL"):\n    n += 1'
WATCH = 'ts.watch(["MSFT", "AAPL"], block=True)'


@pytest.mark.parametrize("code", [LOOP, WATCH], ids=["stream-loop", "watch-in-the-foreground"])
async def test_interrupting_the_cell_stops_the_stream_and_lets_go(server, kernels, emulator, code):
    emulator.configure_streams(interval=0.05, heartbeat=5.0, goaway_after=None, rechunk_seed=1)
    kernel = await new_kernel(server, kernels)
    await sign_in(server, kernel=kernel)

    running = asyncio.ensure_future(kernel.run(code, timeout=60))
    await eventually(lambda: emulator.streams_open == 1, what="the stream opened")
    await asyncio.sleep(0.5)
    await server.app.kernel_manager.interrupt_kernel(kernel.kernel_id)
    result = await running

    await eventually(lambda: emulator.streams_open == 0, what="the stream let go")
    if code == LOOP:
        assert result.error and result.error.startswith("KeyboardInterrupt")
        assert (await kernel.run("print(n > 3)")).stdout.strip() == "True"
    else:
        assert result.error is None and result.stdout.strip().endswith("Stopped.")
    assert (await kernel.run('print(ts.session.get("brokerage/accounts").status_code)')).stdout.strip() == "200"

"""A stream read in a real terminal IPython (driven through a pty) against the emulator:
Ctrl-C stops it and lets go of it, and the session goes on. (The streams themselves are
tested in tests/unit/kernel/test_streams.py.)"""

from __future__ import annotations

import asyncio

from ...parts.kernels import PROMPT, authorize_url, spawn_ipython
from ...parts.signin import sign_in_at
from ...parts.waiting import eventually
from ...unit.kernel.test_streams import QUOTES


async def test_ctrl_c_in_a_terminal_stops_the_stream_and_lets_go_of_it(local_env, emulator):
    emulator.configure_streams(interval=0.05, rechunk_seed=3)
    child = spawn_ipython(local_env)
    try:
        child.sendline("%ts_login")
        await asyncio.to_thread(sign_in_at, authorize_url(child))
        child.expect("Signed in to TradeStation as analyst.")
        child.expect(PROMPT)
        child.sendline(f'n = 0\nfor q in ts.stream("{QUOTES}"):\n    n += 1\n\n')
        await eventually(lambda: emulator.streams_open == 1, what="the stream opened")
        await asyncio.sleep(0.5)
        child.sendintr()
        child.expect("KeyboardInterrupt")
        child.expect(PROMPT)
        await eventually(lambda: emulator.streams_open == 0, what="the stream let go")
        child.sendline("print(n > 5, ts.session.get('brokerage/accounts').status_code)")
        child.expect(r"True 200")
    finally:
        child.terminate(force=True)

"""The kernel's BrokerSource against a real broker: ordering, listeners, and a server that answers
only after a while. (A reply it does not understand: tests/unit/kernel/test_broker_client.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from ts_notebook.kernel.broker_client import BrokerClient, BrokerSource, find_broker
from ts_notebook.launch import free_port
from ts_notebook.protocol import ENV_VAR

from ...parts.signin import sign_in
from ...parts.waiting import eventually


@pytest.fixture
def source(server):
    return BrokerSource(BrokerClient(find_broker(os.environ)))


async def test_a_late_older_answer_never_replaces_a_newer_one(server, emulator, source):
    old = await asyncio.to_thread(source.client.token)
    await sign_in(server)
    new = await asyncio.to_thread(source.client.token)

    source._update(new)
    kept = source._update(old)

    assert kept.signed_in and source.snapshot.version == new["version"] > old["version"]


async def test_listeners_hear_each_change_in_order_and_a_broken_one_harms_no_other(server, emulator, source):
    heard: list[tuple[int, bool]] = []

    def broken(snap):
        raise RuntimeError("listener bug")

    source.add_listener(broken)
    source.add_listener(lambda snap: heard.append((snap.version, snap.signed_in)))
    await eventually(lambda: len(heard) == 1, 10, "the first reading")

    await sign_in(server)
    await eventually(lambda: heard[-1][1] is True, 10, "the sign-in push")
    await asyncio.to_thread(source.logout)
    await eventually(lambda: heard[-1][1] is False, 10, "the sign-out push")

    versions = [v for v, _ in heard]
    assert versions == sorted(set(versions))  # no repeats, never backwards


async def test_a_server_that_answers_only_after_a_while_is_waited_for_not_replaced(server, tmp_path):
    # The runtime file names a port where nothing answers yet (a server still starting, say);
    # two seconds later it leads to the real broker.
    info = json.loads(Path(os.environ[ENV_VAR]).read_text())
    port = free_port()
    info["url"] = f"http://127.0.0.1:{port}{server.app.base_url}"
    late = tmp_path / "late.json"
    late.write_text(json.dumps(info))
    env = {**os.environ, ENV_VAR: str(late)}
    kernel = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "IPython",
        "--no-banner",
        "--colors=NoColor",
        "-c",
        "from ts_notebook.kernel import api; print(type(api.source()).__name__)",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await asyncio.sleep(2)

    async def forward(reader, writer):
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", server.app.port)

        async def pipe(src, dst):
            while data := await src.read(65536):
                dst.write(data)
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    relay = await asyncio.start_server(forward, "127.0.0.1", port)
    try:
        out, err = await asyncio.wait_for(kernel.communicate(), 60)
    finally:
        relay.close()

    assert out.decode().strip() == "BrokerSource" and "Signing in within this process" not in err.decode()

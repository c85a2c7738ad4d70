"""The kernel's BrokerSource against a real broker: ordering, listeners, bad replies."""

from __future__ import annotations

import asyncio
import os

import pytest

from ts_notebook.errors import BrokerError
from ts_notebook.kernel.broker_client import BrokerClient, BrokerSource, find_broker

from ..parts import eventually
from .test_api import browser_sign_in


@pytest.fixture
def source(server):
    return BrokerSource(BrokerClient(find_broker(os.environ)))


async def test_a_late_older_answer_never_replaces_a_newer_one(server, emulator, source):
    old = await asyncio.to_thread(source.client.token)
    await browser_sign_in(server)
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

    await browser_sign_in(server)
    await eventually(lambda: heard[-1][1] is True, 10, "the sign-in push")
    await asyncio.to_thread(source.logout)
    await eventually(lambda: heard[-1][1] is False, 10, "the sign-out push")

    versions = [v for v, _ in heard]
    assert versions == sorted(set(versions))  # no repeats, never backwards


@pytest.mark.parametrize("reply", [{}, {"version": "x"}, {"version": 1, "signed_in": True}],
                         ids=["empty", "bad-version", "missing-fields"])
def test_a_reply_it_does_not_understand_is_a_broker_error_not_a_crash(reply):
    src = BrokerSource(client=None)  # type: ignore[arg-type] - _update makes no call
    with pytest.raises(BrokerError, match="does not understand"):
        src._update(reply)

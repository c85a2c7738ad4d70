"""A server whose callback URL is registered with TradeStation comes straight back to it."""

from __future__ import annotations

import asyncio

import pytest

from .test_relay import start_login


@pytest.fixture
def ts_config(ts_config, emulator, jp_http_port, jp_base_url):
    """A key with this server's callback registered, named in TS_REDIRECT_URI."""
    uri = f"http://127.0.0.1:{jp_http_port}{jp_base_url}ts_notebook/callback"
    emulator.add_redirect_uri(uri)
    return {**ts_config, "redirect_uri": uri}


async def test_a_registered_redirect_uri_comes_straight_back_without_a_relay(server, emulator):
    b, page = await start_login(server)
    assert not server.ext.broker.relay.listening

    done = await asyncio.to_thread(b.submit, page, "allow", username="analyst")

    assert "Signed in to TradeStation as analyst" in done.text
    assert not any("localhost:31022" in u for u in b.visited)

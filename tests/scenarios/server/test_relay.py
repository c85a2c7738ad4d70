"""Redirect URIs by deployment, for a local server: the loopback relay for a brand-new key,
the paste fallback where the browser cannot reach it, and a registered URL."""

from __future__ import annotations

import asyncio
import socket

import pytest
import requests

from ...parts.browser import new_browser
from ...parts.waiting import port_is_free


async def start_login(server):
    """Click the sign-in link; return (browser, the provider's sign-in page)."""
    b = await new_browser(server)
    page = await asyncio.to_thread(b.get, "ts_notebook/login")
    assert "username" in page.text, page.text[:300]
    return b, page


async def test_a_local_login_comes_back_through_the_relay_which_then_lets_go(server, emulator):
    b, page = await start_login(server)
    relay = server.ext.broker.relay
    assert "redirect_uri=http%3A%2F%2Flocalhost%3A31022&" in page.url and relay.port == 31022

    done = await asyncio.to_thread(b.submit, page, "allow", username="analyst")

    assert done.status_code == 200 and "Signed in to TradeStation as analyst" in done.text
    assert b.visited[-2].startswith("http://localhost:31022") and "code=" in b.visited[-2]  # relay, then server
    assert b.visited[-1].startswith(f"{server.url}ts_notebook/callback?code=")
    assert not relay.listening and port_is_free(31022)


async def test_a_taken_port_falls_through_to_the_next_default(server, emulator):
    with socket.socket() as other_server:  # another Jupyter's relay, say
        other_server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other_server.bind(("127.0.0.1", 31022))
        other_server.listen()
        b, page = await start_login(server)
        assert "redirect_uri=http%3A%2F%2Flocalhost%3A3000&" in page.url
        done = await asyncio.to_thread(b.submit, page, "allow", username="analyst")
    assert "Signed in to TradeStation as analyst" in done.text


async def test_a_state_the_relay_does_not_know_gets_a_page_that_says_so(server, emulator):
    await start_login(server)
    r = await asyncio.to_thread(
        requests.get, "http://localhost:31022/?code=x&state=someone-elses", allow_redirects=False, timeout=10
    )
    assert r.status_code == 400 and "not waiting on this Jupyter server" in r.text
    assert server.ext.broker.tokens is None


async def test_an_expired_login_releases_the_relay_port(server, emulator):
    await start_login(server)
    real = server.ext.broker.clock
    server.ext.broker.clock = lambda: real() + 601
    server.ext.broker._expire_pending()
    assert not server.ext.broker.relay.listening and port_is_free(31022)


async def test_a_browser_that_cannot_reach_the_relay_pastes_the_address_instead(server, emulator):
    b, page = await start_login(server)
    b.unreachable.add("localhost:31022")  # Jupyter in a container, or behind an SSH tunnel
    await asyncio.to_thread(b.submit, page, "allow", username="analyst")
    assert b.ended_on and b.ended_on.startswith("http://localhost:31022") and "code=" in b.ended_on

    # The widget's form sends the pasted address to the callback, from the same browser.
    done = await asyncio.to_thread(b.get, "ts_notebook/callback", params={"auth_response": b.ended_on})

    assert done.status_code == 200 and "Signed in to TradeStation as analyst" in done.text
    assert server.ext.broker.tokens is not None


async def test_a_pasted_address_from_another_browser_is_refused(server, emulator):
    b, page = await start_login(server)
    b.unreachable.add("localhost:31022")
    await asyncio.to_thread(b.submit, page, "allow", username="analyst")
    stranger = await new_browser(server)

    r = await asyncio.to_thread(stranger.get, "ts_notebook/callback", params={"auth_response": b.ended_on})

    assert r.status_code == 400 and "another browser" in r.text
    assert server.ext.broker.tokens is None


async def test_another_program_on_ipv6_localhost_makes_the_relay_take_the_next_port(server, emulator):
    if not socket.has_ipv6:
        raise AssertionError("this machine has no IPv6 loopback to test with")
    with socket.socket(socket.AF_INET6) as other:  # e.g. a dev server listening on [::1]:31022 only
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("::1", 31022))
        other.listen()
        _, page = await start_login(server)
    assert "redirect_uri=http%3A%2F%2Flocalhost%3A3000&" in page.url  # never shares 31022 with it


async def test_the_relay_stays_open_while_a_login_is_being_started(server, emulator):
    broker = server.ext.broker
    starting = asyncio.ensure_future(broker.begin_login(None, "k" * 43, f"{server.url}ts_notebook/callback"))
    await asyncio.sleep(0)  # begin_login now waits for discovery in a worker thread ...
    broker.snapshot().to_wire(include_token=False)  # ... while a kernel's long-poll reads the state
    await starting
    assert broker.relay.listening


@pytest.mark.parametrize("address", ["http://[x/?code=1&state=2", "not an address at all"])
async def test_a_pasted_address_that_is_not_one_gets_a_page_that_says_so(server, emulator, address):
    b, _ = await start_login(server)
    r = await asyncio.to_thread(b.get, "ts_notebook/callback", params={"auth_response": address})
    assert r.status_code == 400
    assert "not the address the browser ended on" in r.text or "unknown to this Jupyter server" in r.text
    assert server.ext.broker.tokens is None

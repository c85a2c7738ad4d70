"""TokenBroker on its own, on this test's event loop against the emulator: one renewal however
many ask, none for a token already replaced, a kept sign-in taken up at start, and the
pending-login table's refusals."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from ts_notebook.config import Settings
from ts_notebook.server.broker import LoginRejected, TokenBroker

from ...conftest import CLIENT_ID
from ...parts.signin import approve
from ...parts.waiting import eventually


def refreshes(emulator) -> int:
    return sum(g["grant_type"] == "refresh_token" for g in emulator.grants)


@pytest.fixture
def make_broker(emulator, client_secret, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    made = []

    def make(**explicit: str) -> TokenBroker:
        settings = Settings.load(
            environ={}, client_id=CLIENT_ID, client_secret=client_secret, signin_url=emulator.url, **explicit
        )
        made.append(TokenBroker(settings))
        return made[-1]

    yield make
    for broker in made:
        broker.close()


async def sign_in(broker: TokenBroker):
    pending = await broker.begin_login("http://localhost:31022", "browser-key" * 4, "")
    params = await asyncio.to_thread(approve, pending)
    return await broker.finish_login(params, "browser-key" * 4)


async def test_many_callers_with_the_refused_token_make_one_refresh(make_broker, emulator):
    broker = make_broker()
    stale = (await sign_in(broker)).access_token

    await asyncio.gather(*(broker.refresh(stale) for _ in range(50)))

    assert refreshes(emulator) == 1 and broker.tokens.access_token != stale


async def test_a_caller_whose_token_was_replaced_already_causes_no_refresh(make_broker, emulator):
    broker = make_broker()
    stale = (await sign_in(broker)).access_token
    await broker.refresh(stale)

    await broker.refresh(stale)  # arrives after that refresh finished

    assert refreshes(emulator) == 1


async def test_a_kept_sign_in_that_is_due_is_taken_up_and_renewed_at_start(make_broker, emulator, tmp_path):
    first = make_broker(token_store="file")
    await sign_in(first)
    first.close()
    store = tmp_path / "data" / "ts_notebook" / "signin.json"
    store.write_text(json.dumps({**json.loads(store.read_text()), "expires_at": time.time() - 60}))

    again = make_broker(token_store="file")
    await again.restore()
    await eventually(lambda: again.tokens is not None and again.tokens.seconds_left() > 1000, what="renewal")

    assert again.snapshot().signed_in and again.snapshot().display_name == "analyst"
    assert refreshes(emulator) == 1 and again.tokens.seconds_left() > 1000


async def test_a_kept_sign_in_without_a_scope_ts_scopes_asks_for_is_reported_not_used(make_broker, emulator):
    first = make_broker(token_store="file")
    await sign_in(first)
    first.close()

    other = make_broker(token_store="file", scopes="openid profile offline_access MarketData ReadAccount Trade")
    await other.restore()

    snap = other.snapshot()
    assert not snap.signed_in and "fewer scopes than TS_SCOPES asks for" in snap.error and refreshes(emulator) == 0


async def test_a_pending_login_is_single_use_and_bound_to_its_browser(make_broker):
    broker = make_broker()
    pending = await broker.begin_login("http://localhost:31022", "browser-key" * 4, "")
    with pytest.raises(LoginRejected, match="started in another browser"):
        broker.take_pending(pending.state, "another-browser" * 3)
    broker.take_pending(pending.state, "browser-key" * 4)
    with pytest.raises(LoginRejected, match="already used"):
        broker.take_pending(pending.state, "browser-key" * 4)

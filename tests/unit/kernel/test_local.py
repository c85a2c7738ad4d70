"""LocalSource on its own (the in-process sign-in of a kernel or terminal with no Jupyter
server) against the emulator, with no listener. The attacks on its listener are in
test_local_security; a real terminal and kernel in tests/scenarios/kernel/test_local.py."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ts_notebook.config import Settings
from ts_notebook.kernel.local import LocalSource
from ts_notebook.kernel.state import Status

from ...conftest import CLIENT_ID
from ...parts.signin import approve


def test_two_callbacks_at_once_make_one_exchange(emulator, client_secret):
    source = LocalSource(
        Settings.load(environ={}, client_id=CLIENT_ID, client_secret=client_secret, signin_url=emulator.url)
    )
    attempt = source.begin(listen=False)
    params = approve(attempt.pending)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: attempt.complete(params, attempt.browser_key)[0], range(2)))

    assert sorted(results) == [False, True] and source.tokens is not None
    assert [g["grant_type"] for g in emulator.grants] == ["authorization_code"]


def test_an_in_process_sign_in_can_ask_for_other_scopes_and_status_shows_them(emulator, client_secret):
    source = LocalSource(
        Settings.load(environ={}, client_id=CLIENT_ID, client_secret=client_secret, signin_url=emulator.url)
    )
    attempt = source.begin(listen=False, scopes="MarketData Trade")
    assert "scope=openid+offline_access+MarketData+Trade" in attempt.pending.authorize_url
    assert attempt.complete(approve(attempt.pending), attempt.browser_key)[0]

    assert source.tokens.requested == ("openid", "offline_access", "MarketData", "Trade")
    assert "scopes: openid offline_access MarketData Trade;" in str(Status.of(source.current()))

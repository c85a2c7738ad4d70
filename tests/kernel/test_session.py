"""TSSession and TSAuth on their own, with tokens from the emulator."""

from __future__ import annotations

import socket
import threading
from dataclasses import replace

import pytest
import requests

from ts_notebook.errors import NotSignedIn
from ts_notebook.kernel import session as session_module
from ts_notebook.kernel.session import TSSession
from ts_notebook.kernel.state import Snapshot, TokenSource

from ..test_oauth import REDIRECT, approve, client  # noqa: F401 - the client fixture


class FixedSource(TokenSource):
    """A token source that holds one snapshot and renews through the real client."""

    def __init__(self, snap: Snapshot, renew=None) -> None:
        self.snap = snap
        self.renew = renew
        self.renewals = 0

    def current(self) -> Snapshot:
        return self.snap

    def force_refresh(self, stale: str) -> Snapshot:
        self.renewals += 1
        if self.renew is not None:
            self.snap = replace(self.snap, access_token=self.renew())
        return self.snap

    def login(self, paste=False, timeout=0, open_browser=True) -> None:
        raise AssertionError("no sign-in here")

    def logout(self) -> Snapshot:
        return self.snap

    def add_listener(self, listener) -> None:
        pass

    def remove_listener(self, listener) -> None:
        pass


@pytest.fixture
def signed_in(client, emulator):  # noqa: F811
    pending = client.begin_login(REDIRECT)
    tokens = client.exchange(pending, approve(pending)["code"])
    snap = Snapshot(
        version=1,
        signed_in=True,
        api_url=f"{emulator.url}/v3",
        sim_api_url=f"{emulator.url}/sim/v3",
        env="live",
        api_origins=(emulator.url,),
        access_token=tokens.access_token,
        expires_at=tokens.expires_at,
        lifetime=tokens.lifetime,
    )
    return FixedSource(snap, renew=lambda: client.refresh(tokens).access_token)


@pytest.mark.parametrize(
    ("env", "sim", "prefix"),
    [("live", False, "1"), ("sim", False, "SIM"), ("live", True, "SIM")],
    ids=["live", "TS_ENV=sim", "ts.sim"],
)
def test_relative_paths_join_the_api_base(signed_in, env, sim, prefix):
    signed_in.snap = replace(signed_in.snap, env=env)
    accounts = TSSession(lambda: signed_in, sim=sim).get("brokerage/accounts").json()["Accounts"]
    assert accounts[0]["AccountID"].startswith(prefix)


def test_a_refused_token_is_renewed_once_and_the_request_resent(signed_in, emulator):
    emulator.revoke_access_tokens()
    r = TSSession(lambda: signed_in).get("brokerage/accounts", headers={"X-Trace": "1"})
    assert r.status_code == 200 and [h.status_code for h in r.history] == [401]
    assert r.request.headers["X-Trace"] == "1" and signed_in.renewals == 1


def test_the_resend_goes_through_the_sessions_own_hooks(signed_in, emulator):
    session, seen = TSSession(lambda: signed_in), []
    session.hooks["response"].append(lambda r, **kw: seen.append(r.status_code))
    emulator.revoke_access_tokens()

    r = session.get("brokerage/accounts")

    assert r.status_code == 200 and seen == [401, 200] and signed_in.renewals == 1


def test_ts_auth_on_its_own_renews_and_resends_too(signed_in, emulator):
    from ts_notebook.kernel.session import TSAuth

    emulator.revoke_access_tokens()
    r = requests.get(f"{emulator.url}/v3/brokerage/accounts", auth=TSAuth(lambda: signed_in), timeout=10)
    assert r.status_code == 200 and [h.status_code for h in r.history] == [401] and signed_in.renewals == 1


def test_a_401_with_no_newer_token_is_returned_as_is(signed_in, emulator):
    signed_in.renew = None
    emulator.revoke_access_tokens()
    r = TSSession(lambda: signed_in).get("brokerage/accounts")
    assert r.status_code == 401 and r.json()["Error"] == "Unauthorized"


def test_signed_out_requests_are_refused_before_anything_is_sent(signed_in, emulator):
    signed_in.snap = replace(signed_in.snap, signed_in=False, access_token=None, error="You signed out")
    seen = len(emulator.requests_seen)
    with pytest.raises(NotSignedIn, match="You signed out. Run %ts_login"):
        TSSession(lambda: signed_in).get("brokerage/accounts")
    assert len(emulator.requests_seen) == seen


def test_every_call_has_a_timeout(signed_in, monkeypatch):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts, never answers
    held = []  # keep the accepted connection open, silent
    threading.Thread(target=lambda: held.append(silent.accept()), daemon=True).start()
    monkeypatch.setattr(session_module, "DEFAULT_TIMEOUT", (1.0, 0.5))
    with pytest.raises(requests.Timeout):
        TSSession(lambda: signed_in).get(f"http://127.0.0.1:{silent.getsockname()[1]}/")
    silent.close()

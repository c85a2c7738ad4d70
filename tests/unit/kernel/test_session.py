"""TSSession and TSAuth on their own, with tokens from the emulator."""

from __future__ import annotations

import gc
import socket
import threading
import weakref
from dataclasses import replace

import pytest
import requests

from ts_notebook.errors import NotSignedIn, TSError
from ts_notebook.kernel import session as session_module
from ts_notebook.kernel.replies import APIError
from ts_notebook.kernel.session import TSSession
from ts_notebook.kernel.state import SignOut, Snapshot, TokenSource

from ...conftest import CLIENT_ID
from ...parts.signin import REDIRECT, approve
from ..test_oauth import client  # noqa: F401 - the client fixture


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

    def login(self, paste=False, timeout=0, open_browser=True, scopes=None) -> None:
        raise AssertionError("no sign-in here")

    def logout(self) -> SignOut:
        return SignOut(self.snap.signed_in)

    def add_listener(self, listener) -> None:
        pass

    def remove_listener(self, listener) -> None:
        pass


def signed_in_through(oauth, emulator, **snapshot) -> FixedSource:
    """A source signed in through ``oauth`` (an OAuthClient, which also renews) at the emulator."""
    pending = oauth.begin_login(REDIRECT)
    tokens = oauth.exchange(pending, approve(pending)["code"])
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
        scopes=tokens.scopes,
        **snapshot,
    )
    return FixedSource(snap, renew=lambda: oauth.refresh(tokens).access_token)


@pytest.fixture
def signed_in(client, emulator):  # noqa: F811
    return signed_in_through(client, emulator, max_retries=3, retry_max_wait=10.0)


def signed_in_with(emulator, client_secret, scopes: str) -> FixedSource:
    """A sign-in granted only ``scopes``."""
    from ts_notebook.config import Settings
    from ts_notebook.oauth import OAuthClient

    settings = Settings.load(
        environ={}, client_id=CLIENT_ID, client_secret=client_secret, signin_url=emulator.url, scopes=scopes
    )
    return signed_in_through(OAuthClient(settings), emulator)


@pytest.mark.parametrize(
    ("env", "sim", "prefix"),
    [("live", False, "1"), ("sim", False, "SIM"), ("live", True, "SIM")],
    ids=["live", "TS_ENV=sim", "ts.sim"],
)
def test_relative_paths_join_the_api_base(signed_in, env, sim, prefix):
    signed_in.snap = replace(signed_in.snap, env=env)
    accounts = TSSession(lambda: signed_in, sim=sim).get("brokerage/accounts").json()["Accounts"]
    assert accounts[0]["AccountID"].startswith(prefix)


def test_raise_for_status_raises_when_called_on_the_reply_at_once(signed_in, emulator):
    session = TSSession(lambda: signed_in)
    with pytest.raises(APIError, match="NotFound"):
        session.get("no/such/route").raise_for_status()  # (nothing else holds the reply)


def test_a_reply_nobody_holds_is_freed_at_once_with_its_body(signed_in, emulator):
    """A reply refers to nothing that refers back to it: dropped, its body (20 MB for 57,600
    minute bars) goes at once, not at the garbage collector's next full pass; a download of
    a hundred such replies kept them all before."""
    session = TSSession(lambda: signed_in)
    gc.disable()
    try:
        resp = session.get("marketdata/barcharts/MSFT", params={"barsback": 5})
        resp.raise_for_status()
        resp.content  # noqa: B018 - read, as every caller does
        gone = weakref.ref(resp)
        del resp
        assert gone() is None
    finally:
        gc.enable()


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


# -- API errors and retries ------------------------------------------------------------------


def test_a_missing_scope_is_one_error_that_names_it_and_how_to_ask_for_it(emulator, client_secret):
    source = signed_in_with(emulator, client_secret, "openid offline_access ReadAccount")
    r = TSSession(lambda: source).get("marketdata/quotes/MSFT")

    with pytest.raises(APIError) as caught:
        r.raise_for_status()

    err = caught.value
    assert (err.status, err.error, err.endpoint) == (403, "Forbidden", "GET marketdata/quotes/MSFT")
    assert "lacks the MarketData scope" in str(err) and '%ts_login --scopes "' in str(err)
    assert "MarketData" in str(err).split("--scopes", 1)[1] and "TS_SCOPES" in str(err)
    assert isinstance(err, TSError) and isinstance(err, requests.HTTPError) and err.response is r


def test_a_404_names_the_symbol_or_account_to_check(signed_in):
    r = TSSession(lambda: signed_in).get("no/such/route")
    with pytest.raises(APIError, match=r"404 NotFound on GET no/such/route .*Check the symbol or account id"):
        r.raise_for_status()


def test_a_rate_limited_get_waits_as_the_reply_says_then_succeeds(signed_in, emulator):
    emulator.rate_limit = (2, 1.0)
    session = TSSession(lambda: signed_in)
    codes = [session.get("brokerage/accounts").status_code for _ in range(3)]

    assert codes == [200, 200, 200]
    statuses = [c["status"] for c in emulator.api_calls if c["path"].endswith("accounts")]
    assert statuses == [200, 200, 429, 200]  # the third waited out the window once


def test_a_rate_limit_that_outlasts_the_retries_says_the_quota(signed_in, emulator):
    emulator.rate_limit = (1, 30.0)
    signed_in.snap = replace(signed_in.snap, retry_max_wait=2.0)  # shorter than the 30 s window
    session = TSSession(lambda: signed_in)
    session.get("brokerage/accounts")

    r = session.get("brokerage/accounts")

    assert r.status_code == 429 and r.history == []  # a 30 s wait is past the 2 s budget: not waited
    with pytest.raises(APIError, match=r"429 TooManyRequests .*Over 1 requests per 30 s for accounts; it resets in"):
        r.raise_for_status()


def test_a_post_is_never_retried(signed_in, emulator):
    emulator.fail_next_api_request(503, times=1)
    r = TSSession(lambda: signed_in).post("brokerage/accounts", json={})
    assert r.status_code == 503 and len(emulator.api_calls) == 1


def test_a_gateway_error_on_a_get_is_retried_with_backoff_then_raised_with_the_count(signed_in, emulator):
    emulator.fail_next_api_request(503, times=2)
    assert TSSession(lambda: signed_in).get("brokerage/accounts").status_code == 200

    emulator.fail_next_api_request(502, times=10)
    r = TSSession(lambda: signed_in).get("brokerage/accounts")
    assert r.status_code == 502 and len(r.history) == 3  # three retries, then the reply
    with pytest.raises(APIError, match="having trouble .tried 4 times"):
        r.raise_for_status()


def test_a_dropped_connection_on_a_get_is_retried(signed_in, emulator):
    port = int(emulator.url.rsplit(":", 1)[1])
    emulator.stop()
    threading.Timer(0.4, emulator.start).start()  # back before the second retry

    r = TSSession(lambda: signed_in).get(f"http://127.0.0.1:{port}/v3/brokerage/accounts")
    assert r.status_code in (200, 401)  # answered: tokens of the old run may be gone


def test_raise_for_status_is_requests_own_for_other_hosts(signed_in, other_host):
    r = TSSession(lambda: signed_in).get(f"{other_host.url}/v3/no/such/route")
    assert r.status_code == 401
    with pytest.raises(requests.HTTPError) as caught:
        r.raise_for_status()
    assert not isinstance(caught.value, APIError)


def test_one_session_is_safe_to_share_between_threads(signed_in, emulator):
    from concurrent.futures import ThreadPoolExecutor

    session = TSSession(lambda: signed_in)
    emulator.fail_next_api_request(503, times=5)  # some threads retry meanwhile

    with ThreadPoolExecutor(16) as pool:
        codes = list(
            pool.map(
                lambda i: session.get("brokerage/accounts" if i % 2 else "marketdata/quotes/MSFT").status_code,
                range(400),
            )
        )

    assert set(codes) == {200} and len(emulator.api_calls) == 405


def test_the_renewal_after_a_401_does_not_use_up_a_retry(signed_in, emulator):
    emulator.revoke_access_tokens()
    emulator.fail_next_api_request(503, times=3)
    r = TSSession(lambda: signed_in).get("brokerage/accounts")
    assert r.status_code == 200 and [h.status_code for h in r.history] == [401, 503, 503, 503]


def test_a_redirect_elsewhere_keeps_credentials_that_are_not_ours(signed_in, emulator, other_host):
    session = TSSession(lambda: signed_in)
    r = session.get("redirect", params={"to": f"{other_host.url}/v3/echo"}, headers={"X-Other": "1"})
    assert r.json() == {"authorization": False}  # our bearer never follows
    prepared = requests.Request("GET", f"{other_host.url}/x", headers={"Authorization": "Basic dXNlcjpwdw=="}).prepare()
    session.rebuild_auth(prepared, r)
    assert prepared.headers.get("Authorization") == "Basic dXNlcjpwdw=="  # someone else's, for that host

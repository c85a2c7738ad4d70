"""Attacks on the in-process sign-in (no Jupyter server), run by another program on the same
machine against a real listener on localhost and the emulator: reading the sign-in from the
start address, finishing it with the attacker's own code, racing the start address; and the
sign-in's own promises: a configured localhost callback listened on at its port, and a
replaced refresh token revoked."""

from __future__ import annotations

import re
import stat
import time
from pathlib import Path

import pytest
import requests

from ts_notebook import keeper
from ts_notebook.config import Settings
from ts_notebook.errors import ConfigError
from ts_notebook.kernel.local import LocalSource
from ts_notebook.kernel.local_login import LocalLogin

from ...conftest import CLIENT_ID
from ...parts.browser import Browser
from ...parts.fakes import fails_once
from ...parts.signin import sign_in_at
from ...parts.waiting import port_is_free


@pytest.fixture
def make_source(emulator, client_secret):
    made: list[LocalSource] = []

    def make(**settings) -> LocalSource:
        made.append(
            LocalSource(
                Settings.load(
                    environ={},
                    client_id=CLIENT_ID,
                    client_secret=client_secret,
                    signin_url=emulator.url,
                    api_url=f"{emulator.url}/v3",
                    **settings,
                )
            )
        )
        return made[-1]

    yield make
    for source in made:
        source.close()  # no renewal timer outlives its test (and its emulator)


@pytest.fixture
def login(make_source):
    attempts: list[LocalLogin] = []

    def start(source: LocalSource | None = None) -> LocalLogin:
        source = source or make_source()
        attempt = source.begin()
        attempt.source = source  # for the checks: whose login it is
        attempts.append(attempt)
        return attempt

    yield start
    for attempt in attempts:
        attempt.close()


def test_another_program_cannot_read_the_sign_in_from_the_listener(login, emulator):
    victim = login()  # %ts_login in a terminal or a kernel without a server

    # Another program on this machine asks the listener where to sign in, signs in as itself
    # and brings its own code back.
    page = sign_in_at(f"{victim.listener.url}/start", "mallory").page

    assert page.status_code == 400 and "not the address of a sign-in waiting here" in page.text
    assert not victim.source.snapshot.signed_in
    assert [g["grant_type"] for g in emulator.grants] == []
    # The person's own browser, with the address %ts_login gave, still signs in.
    done = sign_in_at(victim.start_url, "analyst").page
    assert "Signed in to TradeStation as analyst" in done.text and victim.source.snapshot.display_name == "analyst"


def test_a_callback_from_a_browser_that_did_not_start_the_sign_in_is_refused(login, emulator):
    victim = login()  # suppose its state leaked somehow: its start address (and cookie) did not

    r = requests.get(f"{victim.listener.url}/?code=attackers-code&state={victim.pending.state}", timeout=10)

    assert r.status_code == 400 and "started in another browser" in r.text
    assert not victim.done.is_set() and emulator.grants == []


def test_a_start_address_opened_twice_cancels_the_sign_in(login, emulator):
    victim = login()
    b = Browser("http://127.0.0.1/", "")
    first = b.http.get(victim.start_url, allow_redirects=False, timeout=10)  # whoever came first
    assert first.status_code == 302

    second = requests.get(victim.start_url, allow_redirects=False, timeout=10)

    assert second.status_code == 400 and "opened twice, so the sign-in was cancelled" in second.text
    page = b._follow(first)  # the first browser signs in anyway ...
    done = b.submit(page, "allow", username="mallory")
    assert done.status_code == 400 and "already used" in done.text  # ... and is refused
    assert not victim.source.snapshot.signed_in and "cancelled" in victim.source.snapshot.error
    assert [g["grant_type"] for g in emulator.grants] == []


def test_a_configured_localhost_callback_is_listened_on_at_exactly_its_port(login, make_source):
    source = make_source(redirect_uri="http://localhost:3001")

    attempt = login(source)

    assert attempt.listener.port == 3001
    assert "redirect_uri=http%3A%2F%2Flocalhost%3A3001&" in attempt.pending.authorize_url
    assert "Signed in to TradeStation as analyst" in sign_in_at(attempt.start_url, "analyst").page.text
    attempt.close()
    assert port_is_free(3001)


def test_a_configured_callback_elsewhere_asks_for_the_pasted_address(make_source):
    source = make_source(redirect_uri="https://jupyter.example.com/cb")
    with pytest.raises(ConfigError, match="not an http://localhost:PORT address.*%ts_login --paste"):
        source.begin()
    assert port_is_free(31022)
    source.begin(listen=False).close()  # the paste flow needs no listener


@pytest.mark.parametrize("revocation", ["token", "user", "grant"])
@pytest.mark.parametrize(
    ("again_as", "old_revoked"), [("analyst", False), ("trader", True)], ids=["same-person", "another-person"]
)
def test_signing_in_again_keeps_the_new_sign_in_and_revokes_only_another_persons(
    login, make_source, emulator, revocation, again_as, old_revoked
):
    emulator.revocation = revocation
    source = make_source()
    sign_in_at(login(source).start_url, "analyst")
    first = source.tokens

    sign_in_at(login(source).start_url, again_as)

    assert source.tokens.display_name == again_as and source.tokens.refresh_token != first.refresh_token
    assert source.client.refresh(source.tokens).access_token  # the provider still renews the new one
    if old_revoked:
        with pytest.raises(Exception, match="invalid_grant"):
            source.client.refresh(first)


def test_no_unexpected_error_stops_the_in_process_renewal_timer(login, make_source, emulator, monkeypatch):
    monkeypatch.setattr(keeper, "RETRY_AFTER", 1.0)
    emulator.access_token_lifetime = 3
    source = make_source()
    sign_in_at(login(source).start_url, "analyst")
    refresh = fails_once(source.client.refresh, RuntimeError("a bug nobody foresaw"))
    monkeypatch.setattr(source.client, "refresh", refresh)
    first = source.tokens
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (source.tokens is first or source.tokens is None):
        time.sleep(0.1)

    assert source.tokens is not first and source.tokens is not None and refresh.calls >= 2


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
def test_a_configured_loopback_address_starts_on_the_same_host_so_the_cookie_comes_back(
    login, make_source, emulator, host
):
    emulator.add_redirect_uri(f"http://{host}:3001")  # registered for this key by Client Services
    attempt = login(make_source(redirect_uri=f"http://{host}:3001"))
    assert attempt.start_url.startswith(f"http://{host}:3001/start/")
    assert "Signed in to TradeStation as analyst" in sign_in_at(attempt.start_url, "analyst").page.text


def test_two_kernels_signing_in_at_once_from_one_browser_each_keep_their_cookie(login, make_source):
    first, second = login(make_source()), login(make_source())  # 31022 and 3000: two VS Code notebooks
    b = Browser("http://127.0.0.1/", "")
    pages = [b.get(a.start_url) for a in (first, second)]  # both started before either comes back

    done = [b.submit(page, "allow", username="analyst") for page in pages]

    assert all("Signed in to TradeStation as analyst" in d.text for d in done)


def test_another_local_apps_odd_cookie_does_not_hide_ours(login):
    attempt = login()
    b = Browser("http://127.0.0.1/", "")
    b.http.cookies.set("prefs", '{"theme": "dark", "x": [1, 2]}', domain="localhost.local", path="/")
    page = b.get(attempt.start_url)
    assert "Signed in to TradeStation as analyst" in b.submit(page, "allow", username="analyst").text


def test_the_system_browser_is_given_a_private_page_not_the_start_address(login, monkeypatch):
    # Other users read command lines (/proc/*/cmdline): the one-time address must not be on one.
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)  # the system browser opener
    attempt = login()

    attempt.open_browser()

    page = Path(opened[0].removeprefix("file://"))
    assert opened[0].startswith("file:///") and attempt.start_url not in opened[0]
    assert stat.S_IMODE(page.stat().st_mode) == 0o600 and attempt.start_url in page.read_text()
    attempt.close()
    assert not page.exists()


def test_a_reply_that_cannot_be_used_ends_the_wait_with_a_message(login, emulator):
    emulator.expires_in_override = 10**400  # an integer no float holds
    attempt = login()
    done = sign_in_at(attempt.start_url, "analyst").page
    assert "Signed in to TradeStation as analyst" in done.text and attempt.done.is_set()
    assert attempt.source.tokens.lifetime == 1200


def test_a_terminal_sign_in_hands_the_browser_the_private_page(make_source, monkeypatch, capsys):
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)  # the system browser opener

    make_source().login(paste=False, timeout=0.5, open_browser=True)  # no frontend here: the terminal flow

    start = re.search(r"http://localhost:\d+/start/\S+", capsys.readouterr().out).group(0)  # printed for the user
    assert len(opened) == 1 and opened[0].startswith("file:///") and start not in opened[0]

"""The broker's HTTP API and pages, called as kernels and browsers call them."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from ts_notebook.protocol import KEY_HEADER

from ...parts.browser import new_browser
from ...parts.signin import sign_in
from ...parts.waiting import eventually


def api(server, method: str, path: str, key: str | None = "right", **kwargs) -> requests.Response:
    headers = kwargs.pop("headers", {})
    if key:
        headers[KEY_HEADER] = server.ext.key if key == "right" else key
    return requests.request(method, f"{server.url}ts_notebook/api/{path}", headers=headers, timeout=30, **kwargs)


@pytest.mark.parametrize(
    ("key", "status"),
    [(None, 403), ("wrong", 403), ("wrong-é", 403), ("right", 200)],
    ids=["no-credentials", "wrong-key", "non-ascii-key", "runtime-key"],
)
async def test_the_token_api_needs_the_runtime_key(server, emulator, key, status):
    await sign_in(server)
    r = await asyncio.to_thread(api, server, "GET", "token", key=key)
    assert r.status_code == status
    assert ("access_token" in r.json()) is (status == 200)


async def test_the_api_answers_no_other_origin(server, emulator):
    await sign_in(server)
    r = await asyncio.to_thread(
        api,
        server,
        "GET",
        "token",
        key=None,
        headers={"Origin": "https://evil.example", "Authorization": f"token {server.token}"},
    )
    assert r.status_code == 404 and "access_token" not in r.text
    assert "Access-Control-Allow-Origin" not in r.headers


async def test_on_jupyterhub_only_the_owner_may_use_the_sign_in(server, emulator, monkeypatch):
    b = await new_browser(server)  # a Jupyter user who is not JUPYTERHUB_USER
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/the-owner/")
    monkeypatch.setenv("JUPYTERHUB_USER", "the-owner")

    page = await asyncio.to_thread(b.get, "ts_notebook/login")
    token = await asyncio.to_thread(b.http.get, f"{server.url}ts_notebook/api/token", timeout=10)
    by_key = await asyncio.to_thread(api, server, "GET", "token")

    assert page.status_code == 403 and "Only the owner" in page.text
    assert token.status_code == 403 and "access_token" not in token.text
    assert by_key.status_code == 200  # the owner's kernels still work
    assert emulator.requests_seen == []  # nothing was started at the provider


async def test_a_jupyter_user_may_read_the_token_and_a_browser_needs_xsrf_to_sign_out(server, emulator):
    b = (await sign_in(server)).browser

    r = await asyncio.to_thread(b.http.get, f"{server.url}ts_notebook/api/token", timeout=10)
    assert r.status_code == 200 and r.json()["signed_in"] is True

    forged = await asyncio.to_thread(b.http.post, f"{server.url}ts_notebook/api/logout", timeout=10)
    assert forged.status_code == 403
    assert server.ext.broker.tokens is not None

    xsrf = b.http.cookies.get("_xsrf")
    ok = await asyncio.to_thread(
        b.http.post, f"{server.url}ts_notebook/api/logout", headers={"X-XSRFToken": xsrf}, timeout=10
    )
    assert ok.status_code == 200 and ok.json()["signed_in"] is False
    assert server.ext.broker.tokens is None


@pytest.mark.parametrize("route", ["token", "status"])
async def test_a_long_poll_answers_at_once_on_a_change_and_after_its_timeout_otherwise(server, emulator, route):
    version = (await asyncio.to_thread(api, server, "GET", route)).json()["version"]

    started = time.monotonic()
    idle = await asyncio.to_thread(api, server, "GET", route, params={"since": version, "timeout": 0.3})
    assert idle.json()["version"] == version and time.monotonic() - started >= 0.3

    poll = asyncio.ensure_future(asyncio.to_thread(api, server, "GET", route, params={"since": version}))
    await asyncio.sleep(0.3)
    assert not poll.done()
    await sign_in(server)
    reply = (await asyncio.wait_for(poll, 5)).json()
    assert reply["version"] > version  # answered by the change, long before its 25 s timeout


async def test_the_status_bar_long_polls_with_its_jupyter_session_and_never_gets_a_token(server, emulator):
    b = (await sign_in(server)).browser
    status = f"{server.url}ts_notebook/api/status"
    now = (await asyncio.to_thread(b.http.get, status, timeout=10)).json()
    assert now["signed_in"] is True and now["display_name"] == "analyst"
    assert 0 < now["renews_in"] < now["expires_in"]  # the keeper's renewal time, as seconds from now

    poll = asyncio.ensure_future(asyncio.to_thread(b.http.get, status, params={"since": now["version"]}, timeout=30))
    await asyncio.sleep(0.3)
    assert not poll.done()
    await asyncio.to_thread(api, server, "POST", "logout")  # a kernel signs out
    news = (await asyncio.wait_for(poll, 5)).json()
    assert news["signed_in"] is False and news["version"] > now["version"]
    for reply in (now, news):
        assert not {"access_token", "refresh_token", "id_token"} & set(reply)
        assert not [s for s in emulator.issued_secrets() if s and s in json.dumps(reply)]


@pytest.mark.parametrize("route", ["token", "status"])
@pytest.mark.parametrize(
    "query", ["since=abc", "since=1&timeout=soon", "since=1&timeout=nan"], ids=["since", "timeout", "nan"]
)
async def test_malformed_long_poll_arguments_get_a_message(server, query, route):
    r = await asyncio.to_thread(api, server, "GET", f"{route}?{query}")
    assert r.status_code == 400 and "since must be an integer" in r.json()["message"]


async def test_refresh_is_single_flight_across_concurrent_callers(server, emulator):
    await sign_in(server)
    stale = server.ext.broker.tokens.access_token

    replies = await asyncio.gather(
        *[asyncio.to_thread(api, server, "POST", "refresh", data=json.dumps({"stale": stale})) for _ in range(6)]
    )

    assert {r.status_code for r in replies} == {200}
    tokens = {r.json()["access_token"] for r in replies}
    assert len(tokens) == 1 and stale not in tokens
    assert [g["grant_type"] for g in emulator.grants] == ["authorization_code", "refresh_token"]


async def test_the_broker_renews_on_a_timer_and_keeps_a_rotated_refresh_token(server, emulator):
    emulator.access_token_lifetime = 2
    emulator.rotate_refresh_tokens = True
    await sign_in(server)
    first = server.ext.broker.tokens

    await eventually(lambda: sum(g["grant_type"] == "refresh_token" for g in emulator.grants) >= 2, 10, "two renewals")

    now = server.ext.broker.tokens
    assert now.refresh_token != first.refresh_token and now.access_token != first.access_token
    assert all(g["ok"] for g in emulator.grants)  # each renewal used the newest refresh token


async def test_a_renewal_that_fails_for_good_signs_out_and_says_run_ts_login(server, emulator):
    emulator.access_token_lifetime = 2
    await sign_in(server)
    emulator.revoke_refresh_tokens()

    await eventually(lambda: server.ext.broker.tokens is None, 10, "sign-out after a dead refresh token")

    snap = (await asyncio.to_thread(api, server, "GET", "token")).json()
    assert snap["signed_in"] is False and "Run %ts_login" in snap["error"]


async def test_a_renewal_that_fails_for_a_passing_reason_is_retried(server, emulator):
    emulator.access_token_lifetime = 4
    await sign_in(server)
    emulator.fail_next_token_request(error="server_error", status=503, description="busy")

    await eventually(
        lambda: any(g["ok"] and g["grant_type"] == "refresh_token" for g in emulator.grants), 15, "a successful retry"
    )

    assert server.ext.broker.tokens is not None
    assert [g["ok"] for g in emulator.grants[:2]] == [True, False]


async def test_the_login_cookie_is_private_to_this_server_and_cleared_after_the_callback(server, emulator):
    b = await new_browser(server)
    r = await asyncio.to_thread(b.http.get, f"{server.url}ts_notebook/login", allow_redirects=False, timeout=10)
    cookie = r.headers["Set-Cookie"]
    name = cookie.split("=", 1)[0]

    assert name.startswith(f"ts_notebook_login_{server.app.port}_")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert f"Path={server.app.base_url}ts_notebook/" in cookie and "Max-Age=600" in cookie
    await asyncio.to_thread(b._follow, r)
    page = await asyncio.to_thread(b.submit, b.http.get(r.headers["Location"], timeout=10), "allow")
    assert page.status_code == 200 and name not in b.http.cookies


async def test_callback_pages_escape_what_the_provider_sends(server, emulator):
    b = await new_browser(server)
    page = await asyncio.to_thread(b.get, "ts_notebook/login")
    state = page.url.split("state=", 1)[1].split("&", 1)[0]

    r = await asyncio.to_thread(
        b.get, f"ts_notebook/callback?state={state}&error=access_denied&error_description=%3Cscript%3Ex%3C/script%3E"
    )

    assert r.status_code == 400 and '<h1 class="bad" id="ts-result">Sign-in not completed</h1>' in r.text
    assert "<script>x" not in r.text and "&lt;script&gt;x" in r.text
    assert "&lt;script&gt;" not in server.ext.broker.error and "<script>x" in server.ext.broker.error


async def test_a_signed_out_browser_is_sent_to_the_jupyter_login(server):
    r = await asyncio.to_thread(requests.get, f"{server.url}ts_notebook/login", allow_redirects=False, timeout=10)
    assert r.status_code == 302 and "/login?next=" in r.headers["Location"]


@pytest.mark.parametrize("ts_config", [{}], ids=["no-key"])
async def test_login_without_a_key_says_how_to_set_one(server, ts_config):
    b = await new_browser(server)
    r = await asyncio.to_thread(b.get, "ts_notebook/login")
    assert r.status_code == 400 and "TS_CLIENT_ID" in r.text


@pytest.mark.parametrize(
    "query, title",
    [
        ("state=unknown&code=c", "Sign-in not accepted"),  # a state this server never issued
        ("auth_response=http%3A%2F%2F%5B%3A%3A1", "Sign-in not accepted"),  # a pasted address that is not one
    ],
)
async def test_every_refused_callback_is_one_result_page_with_its_title(server, emulator, query, title):
    b = await new_browser(server)
    r = await asyncio.to_thread(b.get, f"ts_notebook/callback?{query}")
    assert r.status_code == 400 and f'<h1 class="bad" id="ts-result">{title}</h1>' in r.text
    assert "Traceback" not in r.text and emulator.grants == []


async def test_a_login_asking_for_other_scopes_sends_them_to_the_provider(server, emulator):
    b = await new_browser(server)
    r = await asyncio.to_thread(
        b.http.get, f"{server.url}ts_notebook/login?scopes=MarketData%20Trade", allow_redirects=False, timeout=10
    )
    scope = parse_qs(urlsplit(r.headers["Location"]).query)["scope"][0]
    assert r.status_code == 302 and scope == "openid offline_access MarketData Trade"

    page = await asyncio.to_thread(b.get, "ts_notebook/login?scopes=Market%3Cb%3E")
    assert page.status_code == 400 and "is not a scope name" in page.text and "<b>" not in page.text

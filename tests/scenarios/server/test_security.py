"""Attacks on the server's sign-in, each first shown to work against the unfixed code: a
callback that forwards out of the user's servers, code and state in the log of an expired
session, a configured localhost callback that nobody listens on, hostile provider replies,
other sites starting sign-ins, and forged Host headers."""

from __future__ import annotations

import asyncio
import dataclasses
import socket

import pytest
import requests

from ts_notebook import keeper

from ...parts.browser import new_browser
from ...parts.kernels import new_kernel
from ...parts.signin import sign_in
from ...parts.waiting import eventually
from .test_api import api
from .test_relay import start_login
from .test_signin_loop import ACCOUNTS, assert_no_secrets


@pytest.fixture
def on_hub(monkeypatch, server):
    """This server as alice's default server on a JupyterHub."""
    for name, value in {
        "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/",
        "JUPYTERHUB_USER": "alice",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_SERVER_NAME": "",
    }.items():
        monkeypatch.setenv(name, value)
    server.app.identity_provider.get_user = lambda handler: type("User", (), {"username": "alice"})()


@pytest.mark.parametrize("name", ["..", ".", "%2e%2e", "%2E", ".%2e", "a%2Fb", "..%2F..", "%2F", "a%00b", "x/../y"])
async def test_a_callback_naming_an_odd_server_is_refused_not_forwarded(server, on_hub, emulator, name):
    b = await new_browser(server)

    r = await asyncio.to_thread(
        b.http.get, f"{server.url}ts_notebook/callback?code=c&state={name}.Zz", allow_redirects=False, timeout=10
    )

    assert r.status_code == 400 and "Location" not in r.headers
    assert "names no server of yours" in r.text or "unknown to this Jupyter server" in r.text
    assert emulator.grants == []


async def test_a_callback_for_a_named_server_of_the_same_user_is_still_forwarded(server, on_hub):
    b = await new_browser(server)
    r = await asyncio.to_thread(
        b.http.get, f"{server.url}ts_notebook/callback?code=c&state=research-2.Zz", allow_redirects=False, timeout=10
    )
    assert r.status_code == 302 and r.headers["Location"].startswith("/user/alice/research-2/ts_notebook/callback?")


async def test_a_callback_after_the_jupyter_session_expired_keeps_code_and_state_out_of_the_log(
    server, emulator, server_log
):
    b, page = await start_login(server)
    for cookie in [c for c in b.http.cookies if c.name.startswith("username-")]:
        b.http.cookies.clear(cookie.domain, cookie.path, cookie.name)  # the Jupyter session has expired

    landed = await asyncio.to_thread(b.submit, page, "allow", username="analyst")
    assert "/login?next=" in landed.url and "code" not in landed.url  # Jupyter's login page
    done = await asyncio.to_thread(b.submit_login, landed)  # signs in; Jupyter sends it on to next

    assert done.status_code == 200 and "Signed in to TradeStation as analyst" in done.text
    code = next(u for u in b.visited if "code=" in u).split("code=", 1)[1].split("&", 1)[0]
    state = page.url.split("state=", 1)[1].split("&", 1)[0]
    log = server_log.text
    assert "/login?next=" in log
    assert code not in log and state not in log
    assert_no_secrets(log, emulator)


async def test_a_configured_localhost_callback_is_listened_on_at_exactly_its_port(server, emulator):
    broker = server.ext.broker
    broker.settings = dataclasses.replace(broker.settings, redirect_uri="http://localhost:3001")
    b, page = await start_login(server)

    assert "redirect_uri=http%3A%2F%2Flocalhost%3A3001&" in page.url and server.ext.broker.relay.port == 3001
    done = await asyncio.to_thread(b.submit, page, "allow", username="analyst")
    assert done.status_code == 200 and "Signed in to TradeStation as analyst" in done.text


@pytest.mark.parametrize(
    "jwks",
    [[], {}, {"keys": "x"}, {"keys": [1, {"kty": "RSA"}]}, "null-like"],
    ids=["list", "empty", "keys-not-a-list", "no-usable-key", "string"],
)
async def test_a_malformed_jwks_gets_a_page_not_a_500(server, emulator, jwks):
    emulator.rotate_signing_key()  # the id_token's key is unknown, so the JWKS is read
    emulator.jwks_override = jwks
    b, page = await start_login(server)

    done = await asyncio.to_thread(b.submit, page, "allow", username="analyst")

    assert done.status_code == 502 and "invalid_id_token" in done.text and "JWKS" in done.text
    assert server.ext.broker.tokens is None


async def test_no_provider_reply_stops_the_renewal_timer(server, emulator, monkeypatch):
    monkeypatch.setattr(keeper, "RETRY_AFTER", 1.0)  # retries once the token has expired: each second
    emulator.access_token_lifetime = 3
    await sign_in(server)
    emulator.rotate_signing_key()
    emulator.jwks_override = []  # each renewal's id_token now fails to verify

    await eventually(
        lambda: sum(g["grant_type"] == "refresh_token" for g in emulator.grants) >= 2,
        15,
        "renewals retried on the timer",
    )
    emulator.jwks_override = None
    before = server.ext.broker.tokens
    await eventually(
        lambda: server.ext.broker.tokens is not before and server.ext.broker.tokens is not None,
        15,
        "a renewal once the JWKS is readable again",
    )


async def test_an_absurd_expires_in_is_cut_to_a_day(server, emulator):
    emulator.expires_in_override = 1e308
    await sign_in(server)

    status = (await asyncio.to_thread(api, server, "GET", "status")).json()
    assert status["signed_in"] is True and 86000 < status["expires_in"] <= 86400
    assert server.ext.broker.signin._timer is not None


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
async def test_another_site_cannot_start_a_sign_in(server, emulator, site):
    b = await new_browser(server)

    r = await asyncio.to_thread(
        b.http.get,
        f"{server.url}ts_notebook/login",
        headers={"Sec-Fetch-Site": site},
        allow_redirects=False,
        timeout=10,
    )

    assert r.status_code == 403 and "Another website tried to start" in r.text
    assert not server.ext.broker.relay.listening and not server.ext.broker.login_pending
    assert emulator.requests_seen == []


@pytest.mark.parametrize("site", ["same-origin", "none"])
async def test_the_notebook_and_the_address_bar_may_start_a_sign_in(server, emulator, site):
    b = await new_browser(server)
    r = await asyncio.to_thread(
        b.http.get,
        f"{server.url}ts_notebook/login",
        headers={"Sec-Fetch-Site": site},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 302 and r.headers["Location"].startswith(f"{emulator.url}/authorize?")


class TestAServerOpenToOtherHosts:
    """Jupyter itself refuses Host headers that are not this machine unless remote access is
    allowed (--ip=0.0.0.0, say); then only ts_notebook's own check stands."""

    @pytest.fixture
    def jp_server_config(self, jp_server_config):
        return {**jp_server_config, "ServerApp": {**jp_server_config["ServerApp"], "allow_remote_access": True}}

    @pytest.mark.parametrize("host", ["local;host:{port}", "localhost!$&'()*+=:{port}", "127.0.0.1%2f..%2fevil:{port}"])
    async def test_a_forged_host_header_never_becomes_a_redirect_target(self, server, emulator, host):
        # Whatever a (non-browser) client puts in Host, no URL is built from it unless it is
        # a plain host[:port]. These pass tornado's own Host check; the Jupyter token (not a
        # cookie, whose name follows the Host) signs the client in.
        r = await asyncio.to_thread(
            requests.get,
            f"{server.url}ts_notebook/login",
            allow_redirects=False,
            timeout=10,
            headers={"Host": host.format(port=server.app.port), "Authorization": f"token {server.token}"},
        )

        assert r.status_code == 400 and "Location" not in r.headers and "Host header" in r.text
        assert not server.ext.broker.login_pending


async def test_two_sign_ins_finishing_at_once_leave_the_last_one_current_and_alive(server, emulator, server_log):
    emulator.revocation = "grant"  # a revocation of any of them would end them all
    await sign_in(server)
    tabs = [await start_login(server) for _ in range(2)]  # two tabs, both at TradeStation's page

    done = await asyncio.gather(*(asyncio.to_thread(b.submit, page, "allow", username="analyst") for b, page in tabs))

    assert all(d.status_code == 200 and "Signed in to TradeStation" in d.text for d in done)
    current = server.ext.broker.tokens
    await server.ext.broker.refresh(None)
    assert server.ext.broker.tokens.access_token != current.access_token  # the one kept renews
    assert server_log.text.count("superseded") == 2  # both replaced ones dropped, not revoked


async def test_a_failed_re_sign_in_leaves_the_sign_in_it_would_have_replaced(server, kernels, emulator):
    k = await new_kernel(server, kernels)
    await sign_in(server, kernel=k)
    before = server.ext.broker.tokens
    b, page = await start_login(server)
    emulator.fail_next_token_request(error="temporarily_unavailable", status=503, description="busy")

    failed = await asyncio.to_thread(b.submit, page, "allow", username="analyst")

    assert failed.status_code == 502 and "temporarily_unavailable" in failed.text
    # Nothing was revoked before the exchange: the sign-in goes on, renewals included.
    assert server.ext.broker.tokens.refresh_token == before.refresh_token
    assert "temporarily_unavailable" in server.ext.broker.error
    assert (await k.run(ACCOUNTS)).stdout.split()[0] == "200"
    await server.ext.broker.refresh(None)
    assert server.ext.broker.tokens.access_token != before.access_token


async def test_a_number_no_float_holds_is_an_ordinary_lifetime(server, emulator):
    emulator.expires_in_override = 10**400
    await sign_in(server)
    assert server.ext.broker.tokens.lifetime == 1200


async def test_a_hub_with_users_on_subdomains_may_start_a_sign_in_from_a_sibling_origin(server, on_hub, emulator):
    b = await new_browser(server)
    r = await asyncio.to_thread(
        b.http.get,
        f"{server.url}ts_notebook/login",
        allow_redirects=False,
        timeout=10,
        headers={"Sec-Fetch-Site": "same-site"},
    )
    assert r.status_code == 302 and r.headers["Location"].startswith(f"{emulator.url}/authorize?")


async def test_a_configured_localhost_port_someone_else_holds_falls_back_to_pasting(server, emulator, caplog):
    server.ext.broker.settings = dataclasses.replace(server.ext.broker.settings, redirect_uri="http://localhost:3001")
    with socket.socket() as squatter:  # another program's server on that port
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", 3001))
        squatter.listen()
        b, page = await start_login(server)
        b.unreachable.add("localhost:3001")  # where the browser ends: not this server's relay
        await asyncio.to_thread(b.submit, page, "allow", username="analyst")

    assert not server.ext.broker.relay.listening and "Cannot listen on port 3001" in caplog.text
    done = await asyncio.to_thread(b.get, "ts_notebook/callback", params={"auth_response": b.ended_on})
    assert "Signed in to TradeStation as analyst" in done.text


async def test_a_pasted_address_after_the_jupyter_session_expired_still_signs_in(server, emulator):
    b, page = await start_login(server)
    b.unreachable.add("localhost:31022")
    await asyncio.to_thread(b.submit, page, "allow", username="analyst")
    for cookie in [c for c in b.http.cookies if c.name.startswith("username-")]:
        b.http.cookies.clear(cookie.domain, cookie.path, cookie.name)

    landed = await asyncio.to_thread(b.get, "ts_notebook/callback", params={"auth_response": b.ended_on})
    done = await asyncio.to_thread(b.submit_login, landed)

    assert "Signed in to TradeStation as analyst" in done.text


class TestAProxiedServer:
    @pytest.fixture
    def jp_server_config(self, jp_server_config):
        return {**jp_server_config, "ServerApp": {**jp_server_config["ServerApp"], "allow_remote_access": True}}

    async def test_a_host_name_with_an_underscore_signs_in(self, server, emulator):
        # nginx's `proxy_set_header Host $proxy_host` with an upstream named jupyter_app, say
        r = await asyncio.to_thread(
            requests.get,
            f"{server.url}ts_notebook/login",
            allow_redirects=False,
            timeout=10,
            headers={"Host": f"jupyter_app:{server.app.port}", "Authorization": f"token {server.token}"},
        )
        assert r.status_code == 302 and "redirect_uri=http%3A%2F%2Fjupyter_app%3A" in r.headers["Location"]

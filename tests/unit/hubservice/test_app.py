"""The hub service's HTTP side with a hub that cannot be asked: a clear 503 in JSON, never a
500 page, and nothing changed; its own page needs no token and shows nothing secret."""

from __future__ import annotations

import json
import secrets

import pytest
from jupyterhub.services.auth import HubAuth
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from ts_notebook.audit import Audit
from ts_notebook.config import Settings
from ts_notebook.emulator import Emulator
from ts_notebook.hubservice.app import MAX_BODY, Service, listen, make_app
from ts_notebook.hubservice.directory import HubDirectory
from ts_notebook.hubservice.vault import Vault
from ts_notebook.launch import free_port

PREFIX = "/services/ts-notebook/"


@pytest.fixture
def service(tmp_path):
    """Start the service's app on this test's loop, with a hub nobody answers for: (url, service)."""
    settings = Settings.load(environ={"TS_CLIENT_ID": "key", "TS_CLIENT_SECRET": "s3cret-value"})
    hub_api = f"http://127.0.0.1:{free_port()}/hub/api"
    directory = HubDirectory(hub_api, "service-token")
    svc = Service(settings, Vault(tmp_path / "v.sqlite", secrets.token_hex(32)), directory, workers=4)
    hub_auth = HubAuth(api_url=hub_api, api_token="service-token")
    hub_auth.access_scopes = {"access:services!service=ts-notebook"}
    port, servers = free_port(), []

    def start() -> tuple[str, Service]:
        servers.append(listen(make_app(svc, hub_auth, PREFIX), port, "127.0.0.1"))
        return f"http://127.0.0.1:{port}{PREFIX}", svc

    yield start
    for server in servers:
        server.stop()
    svc.close()


async def fetch(url: str, **kw):
    """The reply, an error's included; None when the connection was cut without one."""
    try:
        return await AsyncHTTPClient().fetch(url, **kw)
    except HTTPClientError as exc:
        return exc.response
    except OSError:
        return None


async def test_a_hub_that_cannot_be_asked_gets_a_clear_503_and_nothing_changes(service):
    url, svc = service()

    r = await fetch(f"{url}api/signin?since=0&timeout=0", headers={"Authorization": "token some-token"})

    assert r.code == 503 and json.loads(r.body)["error"] == "hub_unavailable"
    assert "try again" in json.loads(r.body)["message"] and svc.users == {}


async def test_the_services_own_page_needs_no_token_and_shows_nothing_secret(service):
    url, _ = service()

    page = await fetch(url)
    call = await fetch(f"{url}api/signin")

    assert page.code == 200 and b"s3cret-value" not in page.body
    assert call.code == 401 and json.loads(call.body)["error"] == "no_token"


async def test_a_huge_body_is_refused_before_it_is_read_token_or_not(service):
    url, svc = service()

    r = await fetch(f"{url}api/signin", method="POST", body=b"x" * (MAX_BODY * 16))

    assert r is None or r.code == 400  # cut off unread: never buffered to reach the token check
    assert (await fetch(url)).code == 200 and svc.users == {}


async def test_a_token_in_the_url_is_not_taken_even_as_a_websocket_would_send_it(service):
    url, _ = service()

    r = await fetch(f"{url}api/signin?token=some-token", headers={"Sec-Fetch-Mode": "websocket"})

    assert r.code == 401 and json.loads(r.body)["error"] == "no_token"


def test_a_cookie_the_sign_in_service_sets_never_rides_on_a_later_call(tmp_path):
    """The service makes every user's provider calls with one session: a cookie one reply sets
    (a load balancer's stickiness cookie) must not go back with the next user's call."""
    with Emulator(client_id="key", client_secret="s3cret-value") as em:
        em.sets_cookies = True
        settings = Settings.load(
            environ={"TS_CLIENT_ID": "key", "TS_CLIENT_SECRET": "s3cret-value", "TS_SIGNIN_URL": em.url}
        )
        directory = HubDirectory(f"http://127.0.0.1:{free_port()}/hub/api", "service-token")
        svc = Service(settings, Vault(tmp_path / "v.sqlite", secrets.token_hex(32)), directory, workers=2)
        try:
            svc.client.revoke("one-users-token")
            svc.client.revoke("another-users-token")
        finally:
            svc.close()

        revokes = [r for r in em.requests_seen if r["path"] == "/oauth/revoke"]
        assert len(revokes) == 2 and not any(r["cookie"] for r in em.requests_seen)


def test_a_flood_of_refused_calls_is_audited_at_a_rate_and_the_rest_counted(tmp_path):
    """One line per refused call would let one user fill the disk: 20 back to back, then 10 a
    minute, and the next line written says how many were left out."""
    now = [1000.0]
    settings = Settings.load(environ={"TS_CLIENT_ID": "key"})
    directory = HubDirectory(f"http://127.0.0.1:{free_port()}/hub/api", "service-token")
    audit = Audit(tmp_path / "audit.jsonl", "hub service")
    vault = Vault(tmp_path / "v.sqlite", secrets.token_hex(32))
    svc = Service(settings, vault, directory, workers=1, clock=lambda: now[0], audit=audit)
    try:
        for _ in range(500):
            svc.audit_refusal("mallory", "", "slow_down")
        svc.audit_refusal("alice", None, "no_access")  # another user's refusals are written still
        now[0] += 6
        svc.audit_refusal("mallory", "", "slow_down")
    finally:
        svc.close()
        audit.close()

    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    mallory = [e for e in lines if e["hub_user"] == "mallory"]
    assert len(mallory) == 21 and {e["event"] for e in lines} == {"refused"}
    assert mallory[-1]["reason"] == "slow_down; 480 more not written since"
    assert [e["reason"] for e in lines if e["hub_user"] == "alice"] == ["no_access"]

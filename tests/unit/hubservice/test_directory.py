"""Who the hub's users are, as the service asks: against a stand-in for the hub's API (a real
HTTP server on 127.0.0.1 answering as a hub whose roles were changed would), since taking a
scope from a running hub's service means reconfiguring and restarting the hub."""

from __future__ import annotations

import asyncio
import json
import secrets

import pytest
import requests
from jupyterhub.services.auth import HubAuth
from tornado import web
from tornado.httpclient import AsyncHTTPClient

from ts_notebook.audit import Audit
from ts_notebook.config import Settings
from ts_notebook.hubservice.app import USER_DELETED, Service, UserSignIn, listen, make_app
from ts_notebook.hubservice.directory import DirectoryError, HubDirectory, same_birth
from ts_notebook.hubservice.vault import Vault, VaultBackend
from ts_notebook.launch import free_port
from ts_notebook.oauth import OAuthClient
from ts_notebook.store import Identity, Store

from ...conftest import CLIENT_ID
from ...parts.signin import REDIRECT, approve


def off_loop(fn, *args):
    """``fn`` in a thread: the stand-in answers on this test's loop meanwhile."""
    return asyncio.get_running_loop().run_in_executor(None, fn, *args)


class FakeHub:
    """What the hub answers: the service's own scopes, and each user's model (None: 404)."""

    def __init__(self) -> None:
        self.scopes: list[str] = ["read:users"]
        self.users: dict[str, dict] = {}
        self.raw: bytes | None = None  # a reply that is no JSON
        self.proxy_404 = False  # a proxy in front of the hub answers 404 pages (mid-upgrade)
        self.tokens: dict[str, str] = {}  # users' tokens: whose each is


@pytest.fixture
def hub():
    """The stand-in, started by the test on its own loop (``hub.start()``)."""
    fake = FakeHub()

    class Me(web.RequestHandler):
        def get(self) -> None:
            token = self.request.headers.get("Authorization", "").removeprefix("token ")
            if token in fake.tokens:  # a user's token, as HubAuth asks about a caller
                scopes = ["access:services!service=ts-notebook"]
                self.finish(json.dumps({"kind": "user", "name": fake.tokens[token], "scopes": scopes}))
            elif token != "service-token":
                self.set_status(403)
                self.finish(json.dumps({"status": 403, "message": "Invalid token"}))
            else:
                self.finish(fake.raw or json.dumps({"kind": "service", "scopes": fake.scopes}))

    class User(web.RequestHandler):
        def get(self, name: str) -> None:
            if fake.proxy_404:
                self.set_status(404)
                self.finish(b"<html><h1>404 Not Found</h1>nginx</html>")
                return
            if name not in fake.users or "read:users" not in fake.scopes:  # the hub's answer, scope or no scope
                self.set_status(404)
                self.finish(json.dumps({"status": 404, "message": "Not Found"}))
                return
            self.finish(json.dumps(fake.users[name]))

    port, servers = free_port(), []
    fake.url = f"http://127.0.0.1:{port}/hub/api"
    app = web.Application([(r"/hub/api/user", Me), (r"/hub/api/users/([^/]+)", User)])
    fake.start = lambda: servers.append(app.listen(port, "127.0.0.1"))
    yield fake
    for server in servers:
        server.stop()


async def test_a_token_without_read_users_is_told_which_scope_to_grant(hub):
    hub.start()
    hub.scopes = ["access:services"]
    directory = HubDirectory(hub.url, "service-token")

    with pytest.raises(DirectoryError, match='"scopes": \\["read:users"\\]'):
        await off_loop(directory.birth, "alice", "a-token")


async def test_a_hub_answering_no_json_is_an_error_never_a_guess(hub):
    hub.start()
    hub.raw = b"<html>a proxy's error page</html>"

    with pytest.raises(DirectoryError, match="no JSON"):
        await off_loop(HubDirectory(hub.url, "service-token").birth, "alice")


BORN = "2026-01-02T03:04:05.000000Z"


def signed_in(settings: Settings):
    """A sign-in at the emulator the settings name (its tokens)."""
    client = OAuthClient(settings)
    pending = client.begin_login(REDIRECT)
    return client.exchange(pending, approve(pending)["code"])


@pytest.fixture
def alice_kept(hub, tmp_path, emulator, client_secret):
    """``await alice_kept(born)``: the stand-in hub started with alice on it, and a service that
    took up her kept sign-in, bound to ``born`` (None: kept before records were bound)."""
    made = []

    async def make(born: str | None) -> tuple[Service, Vault]:
        hub.start()
        hub.users["alice"] = {"kind": "user", "name": "alice", "created": BORN}
        vault = Vault(tmp_path / "v.sqlite", secrets.token_hex(32))
        settings = Settings.load(environ={}, client_id=CLIENT_ID, client_secret=client_secret, signin_url=emulator.url)
        tokens = await off_loop(signed_in, settings)
        Store(VaultBackend(vault, "alice", born), Identity.of(settings)).remember(tokens)
        made.append(svc := Service(settings, vault, HubDirectory(hub.url, "service-token"), workers=2))
        await svc.restore()
        return svc, vault

    yield make
    for svc in made:
        svc.close()


async def test_a_sweep_after_the_service_lost_read_users_retires_nobody(hub, alice_kept):
    """Without the scope the hub says "no such user" about everyone: the sweep must not take that
    for every user deleted and revoke the whole hub's sign-ins."""
    svc, vault = await alice_kept(BORN)
    assert await svc.sweep() == 0  # alice is on the hub: kept

    hub.scopes = []  # an admin edits the roles; the service runs on
    with pytest.raises(DirectoryError):
        await svc.sweep()

    assert vault.users() == ["alice"] and "alice" in svc.users


async def test_a_404_page_of_a_proxy_in_front_of_the_hub_is_never_taken_for_a_deleted_user(hub, alice_kept):
    svc, vault = await alice_kept(BORN)
    hub.proxy_404 = True

    with pytest.raises(DirectoryError, match="could not say who 1 of the users are"):
        await svc.sweep()

    assert vault.users() == ["alice"]


async def test_a_record_kept_before_sign_ins_were_bound_is_retired_not_handed_to_whoever_calls(alice_kept):
    """Nothing can vouch that the alice calling now is the alice who signed in then."""
    svc, vault = await alice_kept(None)
    old = svc.users["alice"]
    assert old.signin.tokens is not None

    entry = await svc.user("alice", "alices-token")

    assert entry is not old and entry.born == BORN and entry.signin.tokens is None and vault.users() == []


@pytest.mark.parametrize(
    ("kept", "now", "same"),
    [
        (BORN, BORN, True),
        ("2026-01-02T03:04:05.700000Z", "2026-01-02T03:04:06Z", True),  # MySQL rounded it at a restart
        ("2026-01-02T03:04:05.700000Z", "2026-01-02T03:04:05+00:00", True),  # or cut it
        (BORN, "2026-01-02T03:09:41.000000Z", False),  # deleted and made again minutes later
        (None, BORN, False),  # kept before sign-ins were bound
        ("", "", True),  # a hub too old to say: the name alone
    ],
)
def test_two_creation_times_are_one_users_within_a_second(kept, now, same):
    assert same_birth(kept, now) is same


async def test_a_deleted_users_token_the_hub_client_still_trusts_is_refused_once_the_name_is_someone_elses(
    hub, tmp_path
):
    """The hub's answer about a token is kept a while; by name, the hub already describes the
    new alice. A token looked up afresh is checked with the hub again before it is served."""
    hub.start()
    hub.users["alice"] = {"kind": "user", "name": "alice", "created": BORN}
    hub.tokens["old-alices-token"] = "alice"
    now = [0.0]
    directory = HubDirectory(hub.url, "service-token", clock=lambda: now[0])
    settings = Settings.load(environ={"TS_CLIENT_ID": "key"})
    svc = Service(settings, Vault(tmp_path / "v.sqlite", secrets.token_hex(32)), directory, workers=2)
    hub_auth = HubAuth(api_url=hub.url, api_token="service-token", cache_max_age=600)
    hub_auth.access_scopes = {"access:services!service=ts-notebook"}
    port = free_port()
    server = listen(make_app(svc, hub_auth, "/services/ts-notebook/"), port, "127.0.0.1")
    url = f"http://127.0.0.1:{port}/services/ts-notebook/api/signin?since=0&timeout=0"
    headers = {"Authorization": "token old-alices-token"}
    try:
        first = await AsyncHTTPClient().fetch(url, headers=headers, raise_error=False)
        # alice is deleted (her tokens with her) and a new alice made; the hub client's answer
        # about the old token is still kept, the service's about alice's birth is not.
        del hub.tokens["old-alices-token"]
        hub.users["alice"] = {"kind": "user", "name": "alice", "created": "2026-03-04T05:06:07.000000Z"}
        now[0] += 3600

        second = await AsyncHTTPClient().fetch(url, headers=headers, raise_error=False)
    finally:
        server.stop()
        svc.close()

    assert first.code == 200
    assert second.code == 403 and json.loads(second.body)["error"] == "not_a_user"


async def test_a_sign_in_finishing_after_its_user_was_retired_is_kept_nowhere(tmp_path, emulator, client_secret):
    """A code being exchanged (slowly) when its hub user is deleted: what it brings must not land
    in the vault, where nobody would revoke it and a restart would renew it."""
    settings = Settings.load(environ={}, client_id=CLIENT_ID, client_secret=client_secret, signin_url=emulator.url)
    vault = Vault(tmp_path / "v.sqlite", secrets.token_hex(32))
    svc = Service(settings, vault, HubDirectory(f"http://127.0.0.1:{free_port()}/hub/api", "t"), workers=2)
    try:
        entry = svc.users["alice"] = UserSignIn(svc, "alice", BORN)
        pending = await off_loop(svc.client.begin_login, REDIRECT)
        code = (await off_loop(approve, pending))["code"]
        emulator.token_delay = 1.0  # a slow token endpoint
        finishing = asyncio.ensure_future(entry.signin.complete(pending, code))
        await asyncio.sleep(0.3)

        await svc.retire(entry, USER_DELETED)
        await finishing

        assert vault.users() == []
    finally:
        svc.close()


async def test_a_user_retired_while_the_service_is_still_taking_up_her_sign_in_is_revoked_and_audited(
    tmp_path, emulator, client_secret
):
    """At start the service reads every kept sign-in; one retired before it is read is revoked
    at TradeStation, and the audit trail says so (who it was, and why)."""
    settings = Settings.load(environ={}, client_id=CLIENT_ID, client_secret=client_secret, signin_url=emulator.url)
    tokens = signed_in(settings)
    vault = Vault(tmp_path / "v.sqlite", secrets.token_hex(32))
    Store(VaultBackend(vault, "alice", BORN), Identity.of(settings)).remember(tokens)
    audit = Audit(tmp_path / "audit.jsonl", "hub service")
    directory = HubDirectory(f"http://127.0.0.1:{free_port()}/hub/api", "t")
    svc = Service(settings, vault, directory, workers=4, audit=audit)
    held = vault.lock("alice")
    held.acquire()  # reading her kept sign-in takes a while (the store's lock is busy)
    try:
        restoring = asyncio.ensure_future(svc.restore())
        await asyncio.sleep(0.1)
        asyncio.get_running_loop().call_later(0.5, held.release)

        await svc.retire(svc.users["alice"], USER_DELETED)
        await restoring
    finally:
        svc.close()

    assert vault.users() == []
    (said,) = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert (said["event"], said["hub_user"], said["reason"]) == ("signed_out", "alice", USER_DELETED)
    assert said["subject"] == "auth0|analyst"
    grant = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}
    key = {"client_id": CLIENT_ID, "client_secret": client_secret}
    assert not requests.post(f"{emulator.url}/oauth/token", data={**grant, **key}, timeout=10).ok  # revoked


async def test_a_call_while_an_unbound_sign_in_is_still_being_read_waits_and_gets_nothing_of_it(
    hub, tmp_path, emulator, client_secret
):
    hub.start()
    hub.users["alice"] = {"kind": "user", "name": "alice", "created": BORN}
    settings = Settings.load(environ={}, client_id=CLIENT_ID, client_secret=client_secret, signin_url=emulator.url)
    vault = Vault(tmp_path / "v.sqlite", secrets.token_hex(32))
    Store(VaultBackend(vault, "alice", None), Identity.of(settings)).remember(await off_loop(signed_in, settings))
    svc = Service(settings, vault, HubDirectory(hub.url, "service-token"), workers=4)
    held = vault.lock("alice")
    held.acquire()  # reading her kept sign-in takes a while
    try:
        restoring = asyncio.ensure_future(svc.restore())
        await asyncio.sleep(0.1)
        asyncio.get_running_loop().call_later(0.5, held.release)

        entry = await svc.user("alice", "new-alices-token")
        await restoring
    finally:
        svc.close()

    assert entry.signin.tokens is None and vault.users() == []

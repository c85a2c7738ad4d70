"""The hub service on a real JupyterHub: the client secret and the refresh tokens stay in the
service; one sign-in per hub user serves all of that user's servers, survives a culled server
and a restarted service, and renews once per expiry for all of them together.

The service runs as an external service here (the test starts and restarts its process, as
zero-to-jupyterhub runs it beside the hub); ``test_managed_service.py`` lets the hub start it.
Tokens live three seconds and rotate on every refresh throughout.
"""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from ts_notebook.emulator import Emulator
from ts_notebook.hubservice.app import USER_DELETED, USER_REMADE

from ..conftest import CLIENT_ID
from ..parts.audit import find, read_trail
from ..parts.kernels import environ_without_settings
from ..parts.waiting import eventually_sync
from .conftest import ACCOUNTS, ROOT, STATUS, Hub, hub_sign_in, running_hub, stop_process, unused_port, wait_for_answer

CLIENT_SECRET = secrets.token_urlsafe(24)
SERVICE = "ts-notebook"
PREFIX = f"/services/{SERVICE}/"


class ServiceProcess:
    """The service, run as the hub runs an external service; started and stopped by the test."""

    def __init__(self, tmp: Path, emulator: Emulator, hub_port: int) -> None:
        self.port, self.token, self.folder = unused_port(), secrets.token_hex(24), tmp / "service"
        self.folder.mkdir()
        self.url = f"http://127.0.0.1:{self.port}{PREFIX}"
        self.env = {
            **environ_without_settings(),
            "PYTHONPATH": str(ROOT),
            "JUPYTERHUB_API_TOKEN": self.token,
            "JUPYTERHUB_API_URL": f"http://127.0.0.1:{hub_port}/hub/api",
            "JUPYTERHUB_SERVICE_NAME": SERVICE,
            "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{self.port}",
            "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
            "TS_CLIENT_ID": CLIENT_ID,
            "TS_CLIENT_SECRET": CLIENT_SECRET,
            "TS_SIGNIN_URL": emulator.url,
            "TS_NOTEBOOK_CRYPT_KEY": secrets.token_hex(32),
            "TS_NOTEBOOK_VAULT": str(self.folder / "signins.sqlite"),
            "TS_NOTEBOOK_AUDIT_LOG": str(self.folder / "audit.jsonl"),
        }
        self.audit = Path(self.env["TS_NOTEBOOK_AUDIT_LOG"])
        self.log = self.folder / "service.log"
        self.proc: subprocess.Popen | None = None

    def run(self, **env: str | None) -> subprocess.CompletedProcess:
        """Run the service to its end with some variables changed (None: removed)."""
        changed = {k: v for k, v in {**self.env, **env}.items() if v is not None}
        return subprocess.run(
            [sys.executable, "-m", "ts_notebook.hubservice"],
            cwd=self.folder,
            env=changed,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self) -> None:
        out = open(self.log, "a")  # noqa: SIM115 - the process writes it until stopped
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ts_notebook.hubservice"], cwd=self.folder, env=self.env, stdout=out, stderr=out
        )
        wait_for_answer(self.url, self.proc, self.log, "The ts_notebook service")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def call(self, token: str | None, method: str = "GET", route: str = "api/signin", **kw) -> requests.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        return requests.request(method, self.url + route, headers=headers, timeout=30, **kw)


@pytest.fixture(scope="module")
def emulator():
    with Emulator(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, access_token_lifetime=3, rotate_refresh_tokens=True
    ) as em:
        yield em


@pytest.fixture(scope="module")
def service_hub(emulator, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("service_hub")
    ports = (unused_port(), unused_port())
    service = ServiceProcess(tmp, emulator, ports[1])
    servers_env = {  # no secret of any kind: the key's id and where things are
        "TS_CLIENT_ID": CLIENT_ID,
        "TS_SIGNIN_URL": emulator.url,
        "TS_API_URL": f"{emulator.url}/v3",
        "TS_SIM_API_URL": f"{emulator.url}/sim/v3",
        "TS_HUB_SERVICE_URL": service.url,
        "PYTHONPATH": str(ROOT),
    }
    config = f"""
c.JupyterHub.services.append({{"name": {SERVICE!r}, "url": "http://127.0.0.1:{service.port}",
                               "api_token": {service.token!r}, "display": False}})
c.JupyterHub.load_roles.append({{"name": "user", "scopes": ["self", "access:services!service={SERVICE}"]}})
c.JupyterHub.load_roles.append({{"name": "ts-notebook-service", "services": [{SERVICE!r}], "scopes": ["read:users"]}})
c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", "access:services!service={SERVICE}"]
"""
    service.start()
    try:
        with running_hub(tmp, emulator, servers_env, config, ports) as hub:
            hub.service = service
            yield hub
    finally:
        service.stop()


@pytest.fixture(scope="module")
def alice_token(service_hub):
    """A hub token of alice's that may call the service, as her servers' tokens may."""
    scopes = {"scopes": [f"access:services!service={SERVICE}"]}
    return service_hub.api.post(f"{service_hub.url}hub/api/users/alice/tokens", json=scopes, timeout=30).json()["token"]


@pytest.fixture(scope="module")
def bob_token(service_hub):
    """The same for bob, who never signs in here."""
    scopes = {"scopes": [f"access:services!service={SERVICE}"]}
    return service_hub.api.post(f"{service_hub.url}hub/api/users/bob/tokens", json=scopes, timeout=30).json()["token"]


def grants(hub: Hub, kind: str) -> list[dict]:
    return [g for g in hub.emulator.timed_grants if g["grant_type"] == kind]


def sign_ins(hub: Hub) -> int:
    """Codes exchanged for a sign-in at the provider (a refused code is none)."""
    return sum(g["ok"] for g in grants(hub, "authorization_code"))


# Run in a user's kernel: wait (up to 30 s) until the status says TEXT, then print it. A change
# made in another process (the service, another server) reaches a kernel soon, not at once.
UNTIL = """
import time
import ts_notebook as ts
for _ in range(150):
    status = str(ts.status())
    if {text!r} in status:
        break
    time.sleep(0.2)
print(status)
"""
UNTIL_SIGNED_IN = UNTIL.format(text="Signed in to TradeStation")
UNTIL_SIGNED_OUT = UNTIL.format(text="Not signed in")


@pytest.fixture
def alice(service_hub) -> str:
    """alice's default server, signed in: by this fixture when no earlier test left her so."""
    default = service_hub.start("alice")
    if "Signed in to TradeStation" not in service_hub.run(default, STATUS):
        assert "Signed in to TradeStation" in hub_sign_in(service_hub, service_hub.browser("alice"), default).text
    return default


def test_alice_signs_in_once_and_all_her_servers_are_signed_in_bob_stays_signed_out(service_hub):
    browser = service_hub.browser("alice")
    default, research = service_hub.start("alice"), service_hub.start("alice", "research")
    bob = service_hub.start("bob")
    before = sign_ins(service_hub)

    done = hub_sign_in(service_hub, browser, default)

    assert done.status_code == 200 and "Signed in to TradeStation as analyst" in done.text
    assert service_hub.run(default, ACCOUNTS).strip() == "11111111"
    status = service_hub.run(research, UNTIL_SIGNED_IN)  # no click there
    assert "kept by the hub's ts_notebook service" in status, status
    assert service_hub.run(research, ACCOUNTS).strip() == "11111111"
    assert "Not signed in" in service_hub.run(bob, STATUS)
    assert sign_ins(service_hub) == before + 1


# Run in a user's kernel: every environment it can name and every file under the user's home
# and Jupyter's folders, sent back whole for the test to search (the kernel is never told the
# secret, which would put it in the kernel's own history).
COLLECT = r"""
import base64, json, os
from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir
found = {}
def take(path):
    try:
        with open(path, "rb") as f:
            found[path] = base64.b64encode(f.read(4_000_000)).decode()
    except OSError as exc:
        found[path] = "unreadable " + type(exc).__name__
found["os.environ"] = base64.b64encode(json.dumps(dict(os.environ)).encode()).decode()
for pid in ("self", str(os.getppid())):
    take(f"/proc/{pid}/environ")
    take(f"/proc/{pid}/cmdline")
for top in {os.path.expanduser("~"), os.getcwd(), jupyter_runtime_dir(), jupyter_data_dir()}:
    for folder, _, files in os.walk(top):
        for name in files:
            take(os.path.join(folder, name))
print(json.dumps(found))
"""


def test_the_client_secret_is_in_the_services_environment_only(service_hub):
    servers = [service_hub.start("alice"), service_hub.start("alice", "research"), service_hub.start("bob")]
    secret = CLIENT_SECRET.encode()

    for server in servers:
        found = json.loads(service_hub.run(server, COLLECT))
        server_environ = [p for p in found if p.endswith("/environ") and p.split("/")[2].isdigit()]
        assert server_environ and not found[server_environ[0]].startswith("unreadable")
        leaks = [p for p, v in found.items() if not v.startswith("unreadable") and secret in base64.b64decode(v)]
        assert leaks == [], f"{server}: {leaks}"

    # The same search finds it where it is: the service's environment.
    assert secret in Path(f"/proc/{service_hub.service.proc.pid}/environ").read_bytes()


# Run in bob's kernel: call the service with his server's own hub token, naming alice every way.
AS_BOB = r"""
import json, os, requests
env = dict(kv.split("=", 1) for kv in open(f"/proc/{os.getppid()}/environ").read().split("\0") if "=" in kv)
url, token = env["TS_HUB_SERVICE_URL"], env["JUPYTERHUB_API_TOKEN"]
h = {"Authorization": f"token {token}"}
out = []
for extra in ({"user": "alice"}, {"name": "alice"}, {"since": "0", "timeout": "0", "user": "alice"}):
    r = requests.get(url + "api/signin", params=extra, headers={**h, "X-Forwarded-User": "alice"}, timeout=30)
    out.append([r.status_code, r.json()])
r = requests.post(url + "api/refresh", json={"stale": None, "user": "alice"}, headers=h, timeout=30)
out.append([r.status_code, r.json()])
print(json.dumps(out))
"""


def test_bobs_server_asking_the_service_for_alices_token_gets_only_bobs_sign_in(service_hub, alice):
    bob = service_hub.start("bob")
    assert service_hub.run(alice, ACCOUNTS).strip() == "11111111"

    replies = json.loads(service_hub.run(bob, AS_BOB))

    for status, body in replies[:3]:
        assert status == 200 and body["signed_in"] is False and "access_token" not in body
    assert replies[3][0] == 409 and replies[3][1]["error"] == "not_signed_in"
    # Not a user's server at all: another service's token, no token, a token lacking the scope.
    other = service_hub.service.call(service_hub.api.headers["Authorization"].split()[1])
    anonymous = service_hub.service.call(None)
    narrow = service_hub.api.post(
        f"{service_hub.url}hub/api/users/bob/tokens", json={"scopes": ["read:users:name!user"]}, timeout=30
    ).json()["token"]
    assert (other.status_code, other.json()["error"]) == (403, "not_a_user")
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "no_token")
    assert service_hub.service.call(narrow).status_code == 403


@pytest.mark.parametrize(
    ("method", "route", "body", "says"),
    [
        ("POST", "api/signin", "not json", "Send a JSON object"),
        ("POST", "api/signin", "[1, 2]", "Send a JSON object"),
        ("POST", "api/signin", {"code": "c", "nonce": "n", "redirect_uri": "u"}, "code_verifier must be"),
        (
            "POST",
            "api/signin",
            {"code": "c" * 5000, "code_verifier": "v", "nonce": "n", "redirect_uri": "u"},
            "code must be",
        ),
        (
            "POST",
            "api/signin",
            {"code": "c", "code_verifier": "v", "nonce": "n\n", "redirect_uri": "u"},
            "nonce must be",
        ),
        (
            "POST",
            "api/signin",
            {"code": "c", "code_verifier": "v", "nonce": "n", "redirect_uri": "u", "scopes": "x"},
            "scopes",
        ),
        ("POST", "api/refresh", {"stale": 12}, "stale must be"),
        ("GET", "api/signin?since=soon", None, "since must be a whole number"),
    ],
)
def test_bad_calls_get_a_clear_400_and_change_nothing(service_hub, alice, method, route, body, says):
    default = alice
    assert service_hub.run(default, ACCOUNTS).strip() == "11111111"
    token = service_hub.api.post(
        f"{service_hub.url}hub/api/users/alice/tokens",
        json={"scopes": [f"access:services!service={SERVICE}"]},
        timeout=30,
    ).json()["token"]
    before = len(service_hub.emulator.grants)

    r = service_hub.service.call(token, method, route, data=body if isinstance(body, str) else json.dumps(body))

    assert r.status_code == 400 and says in r.json()["message"], r.text
    assert len(service_hub.emulator.grants) - before <= 1  # a renewal on its timer, at most
    assert service_hub.run(default, ACCOUNTS).strip() == "11111111"


def test_many_servers_asking_to_renew_at_once_make_one_refresh(service_hub, alice, alice_token):
    stale = service_hub.service.call(alice_token, route="api/signin?since=0&timeout=0").json()["access_token"]
    since = time.time()

    def renew(_: int) -> requests.Response:
        return service_hub.service.call(alice_token, "POST", "api/refresh", data=json.dumps({"stale": stale}))

    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(renew, range(20)))

    tokens = {r.json()["access_token"] for r in replies if r.status_code == 200}
    assert len(tokens) == 1 and stale not in tokens  # one refresh answered all twenty
    assert all(g["ok"] for g in grants(service_hub, "refresh_token") if g["at"] >= since)


def test_a_user_flooding_the_service_with_long_polls_holds_only_a_few_and_is_told_when_to_come_back(
    service_hub, bob_token
):
    version = service_hub.service.call(bob_token, route="api/signin?since=0&timeout=0").json()["version"]

    def poll(_: int) -> tuple[float, requests.Response]:
        start = time.monotonic()
        r = service_hub.service.call(bob_token, route=f"api/signin?since={version}&timeout=5")
        return time.monotonic() - start, r

    with ThreadPoolExecutor(40) as pool:
        polls = list(pool.map(poll, range(40)))

    refused = [r for w, r in polls if r.status_code == 429]
    assert len(refused) >= 8 and sum(w >= 4 for w, _ in polls) <= 32, sorted(round(w, 1) for w, _ in polls)
    assert all(int(r.headers["Retry-After"]) >= 1 and "one per server" in r.json()["message"] for r in refused)


def user_token(hub: Hub, name: str) -> str:
    """A hub token of ``name``'s that may call the service, as that user's servers' tokens may."""
    scopes = {"scopes": [f"access:services!service={SERVICE}"]}
    return hub.api.post(f"{hub.url}hub/api/users/{name}/tokens", json=scopes, timeout=30).json()["token"]


def test_a_user_forcing_renewals_makes_at_most_one_provider_call_per_30_s(service_hub):
    """Her own current token sent back as refused, as fast as she can for 3 s (412 renewals at
    TradeStation before, signing the whole hub out with a provider that throttles)."""
    hub_sign_in(service_hub, service_hub.browser("carol"), service_hub.start("carol"))
    token = user_token(service_hub, "carol")
    since, replies = time.time(), []
    deadline = time.monotonic() + 3
    try:
        while time.monotonic() < deadline:
            current = service_hub.service.call(token, route="api/signin?since=0&timeout=0").json()["access_token"]
            body = json.dumps({"stale": current})
            replies.append(service_hub.service.call(token, "POST", "api/refresh", data=body))
    finally:  # signed out and revoked: no renewals of hers in later tests' counts
        service_hub.service.call(token, "DELETE")

    renewals = [g for g in grants(service_hub, "refresh_token") if g["at"] >= since]
    refused = [r for r in replies if r.status_code == 429]
    assert len(replies) > 50, len(replies)
    # The timers of the users signed in here (3-second tokens) and at most one forced renewal.
    assert len(renewals) <= 10, (len(renewals), len(replies))
    assert len(refused) > 40 and all(int(r.headers["Retry-After"]) >= 1 for r in refused)
    assert "Renewed less than 30 s ago" in refused[0].json()["message"]


def test_a_user_sending_made_up_codes_gets_three_exchanges_a_minute(service_hub):
    """602 token-endpoint calls in 3 s before."""
    token = user_token(service_hub, "dave")
    body = json.dumps({"code": "made-up", "code_verifier": "v" * 43, "nonce": "n", "redirect_uri": "http://h/cb"})
    since, replies = time.time(), []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        replies.append(service_hub.service.call(token, "POST", data=body))

    exchanges = [g for g in grants(service_hub, "authorization_code") if g["at"] >= since]
    assert len(replies) > 50 and len(exchanges) == 3, (len(replies), len(exchanges))
    refused = [r for r in replies if r.status_code == 429]
    assert len(refused) == len(replies) - 3 and "3 sign-ins a minute" in refused[0].json()["message"]
    assert 1 <= int(refused[0].headers["Retry-After"]) <= 20


def test_when_tradestation_throttles_the_service_waits_its_retry_after_for_everyone(service_hub):
    """A provider's 429 is not passed on as a storm: calls on request wait its Retry-After."""
    em = service_hub.emulator
    body = json.dumps({"code": "made-up", "code_verifier": "v" * 43, "nonce": "n", "redirect_uri": "http://h/cb"})
    em.fail_next_token_request(
        error="temporarily_unavailable",
        status=429,
        description="slow down",
        retry_after=2,
        grant_type="authorization_code",  # the other users' renewals go on meanwhile
    )
    since = time.time()
    first = service_hub.service.call(user_token(service_hub, "erin"), "POST", data=body)
    assert first.status_code == 400 and first.json()["error"] == "temporarily_unavailable"

    carol = user_token(service_hub, "carol")
    waiting = service_hub.service.call(carol, "POST", data=body)  # another user, within the 2 s
    assert waiting.status_code == 429 and "asked to be called less" in waiting.json()["message"]
    assert 1 <= int(waiting.headers["Retry-After"]) <= 2
    assert len([g for g in grants(service_hub, "authorization_code") if g["at"] >= since]) == 1

    deadline = time.monotonic() + 10  # after its Retry-After, calls reach TradeStation again
    while (later := service_hub.service.call(carol, "POST", data=body)).status_code == 429:
        assert time.monotonic() < deadline, later.text
        time.sleep(0.5)
    assert later.status_code == 400 and later.json()["error"] == "invalid_grant"


def test_a_user_flooding_the_service_with_codes_gets_one_exchange_at_a_time(service_hub, bob_token):
    body = json.dumps({"code": "bogus", "code_verifier": "v" * 43, "nonce": "n", "redirect_uri": "http://h/cb"})
    service_hub.emulator.token_delay = 2
    try:
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda _: service_hub.service.call(bob_token, "POST", data=body), range(4)))
    finally:
        service_hub.emulator.token_delay = 0

    assert sorted(r.status_code for r in replies) == [400, 409, 409, 409], [r.text for r in replies]
    assert "being finished" in next(r for r in replies if r.status_code == 409).json()["message"]


def test_renewals_asked_for_with_no_refused_token_cost_nothing_until_due(service_hub, alice, alice_token):
    since = time.time()

    replies = [service_hub.service.call(alice_token, "POST", "api/refresh", data='{"stale": null}') for _ in range(10)]

    assert all(r.status_code == 200 and r.json()["signed_in"] for r in replies)
    assert len([g for g in grants(service_hub, "refresh_token") if g["at"] >= since]) <= 2  # the timer's, at most


def test_a_stopped_and_started_server_is_signed_in_with_no_click(service_hub, alice):
    before = sign_ins(service_hub)
    service_hub.stop("alice")  # as the idle culler does

    default = service_hub.start("alice")

    assert service_hub.run(default, ACCOUNTS).strip() == "11111111"
    assert sign_ins(service_hub) == before


# Run in each of alice's kernels: call the API every 50 ms for LOAD_SECONDS, report each status.
LOAD_SECONDS = 10
LOAD = f"""
import json, time
import ts_notebook as ts
codes, end = [], time.monotonic() + {LOAD_SECONDS}
while time.monotonic() < end:
    try:
        codes.append(ts.session.get("brokerage/accounts").status_code)
    except Exception as exc:
        codes.append(type(exc).__name__)
    time.sleep(0.05)
print(json.dumps(codes))
"""


def test_a_restarted_service_keeps_everyone_signed_in_and_no_request_fails(service_hub, alice):
    servers = [alice, service_hub.start("alice", "research")]
    assert "Signed in to TradeStation" in service_hub.run(servers[1], UNTIL_SIGNED_IN)
    results: dict[str, list] = {}

    def load(server: str) -> None:
        results[server] = json.loads(service_hub.run(server, LOAD))

    threads = [threading.Thread(target=load, args=(s,)) for s in servers]
    started = time.time()
    for t in threads:
        t.start()
    time.sleep(4)
    service_hub.service.restart()  # mid-run, while both servers' kernels call the API
    for t in threads:
        t.join(120)

    for server in servers:
        codes = results[server]
        assert len(codes) > 50 and set(codes) == {200}, (server, [c for c in codes if c != 200][:5])
    refreshes = [g for g in grants(service_hub, "refresh_token") if g["at"] >= started]
    assert all(g["ok"] for g in refreshes), refreshes
    # Three-second tokens renewed two seconds in, once for both servers together (and at most
    # once more when the restarted service takes up a due sign-in).
    assert 3 <= len(refreshes) <= LOAD_SECONDS / 2 + 3, [round(g["at"] - started, 2) for g in refreshes]


def test_a_service_stopped_mid_renewal_keeps_the_rotated_token(service_hub, alice, alice_token):
    default = alice
    assert service_hub.run(default, ACCOUNTS).strip() == "11111111"
    stale = service_hub.service.call(alice_token, route="api/signin?since=0&timeout=0").json()["access_token"]
    since = time.time()
    service_hub.emulator.token_delay = 2.5  # the provider answers the renewal after the stop began
    try:
        with ThreadPoolExecutor(1) as pool:
            renewal = pool.submit(
                service_hub.service.call, alice_token, "POST", "api/refresh", data=json.dumps({"stale": stale})
            )
            time.sleep(0.5)
            service_hub.service.restart()  # SIGTERM while the rotated token is on its way
            renewal.exception()
    finally:
        service_hub.emulator.token_delay = 0

    assert service_hub.run(default, ACCOUNTS).strip() == "11111111"
    refreshes = [g for g in grants(service_hub, "refresh_token") if g["at"] >= since]
    assert refreshes and all(g["ok"] for g in refreshes), refreshes  # the rotated token was kept, never reused


def test_logout_in_one_server_signs_all_out_and_revokes(service_hub, alice):
    default, research = alice, service_hub.start("alice", "research")
    assert "Signed in to TradeStation" in service_hub.run(research, UNTIL_SIGNED_IN)

    service_hub.run(research, "import ts_notebook as ts\nts.logout()")

    assert "Not signed in" in service_hub.run(default, UNTIL_SIGNED_OUT)  # through the service
    assert "Not signed in" in service_hub.run(service_hub.start("alice", "research"), STATUS)
    gone = service_hub.run(default, ACCOUNTS)
    assert "NotSignedIn" in gone, gone
    em, key = service_hub.emulator, {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    grant = {"grant_type": "refresh_token", **key}
    live = [
        s
        for s in em.issued_secrets()
        if requests.post(f"{em.url}/oauth/token", data={**grant, "refresh_token": s}, timeout=10).ok
    ]
    assert live == []  # the last refresh token was revoked, not just forgotten


def test_a_sign_out_whose_revocation_failed_at_the_service_says_so(service_hub, alice):
    service_hub.emulator.stop()  # the service cannot reach the provider to revoke
    try:
        said = service_hub.run(alice, "import ts_notebook as ts\nprint(ts.logout())")
    finally:
        service_hub.emulator.start()

    assert "revoking it at TradeStation failed (network_error)" in said, said
    assert "Not signed in" in service_hub.run(alice, UNTIL_SIGNED_OUT)


def test_a_changed_key_means_signing_in_again_never_a_crash(service_hub):
    default = service_hub.start("alice")
    assert "Signed in to TradeStation" in hub_sign_in(service_hub, service_hub.browser("alice"), default).text
    old_key = service_hub.service.env["TS_NOTEBOOK_CRYPT_KEY"]
    service_hub.service.env["TS_NOTEBOOK_CRYPT_KEY"] = secrets.token_hex(32)
    try:
        service_hub.service.restart()
        # The server follows the restarted service within its retry interval; a kernel hears at once.
        status = service_hub.run(default, UNTIL_SIGNED_OUT)
        assert "Not signed in" in status and "could not open your kept sign-in" in status, status
        assert service_hub.service.proc.poll() is None  # still serving

        assert "Signed in to TradeStation" in hub_sign_in(service_hub, service_hub.browser("alice"), default).text
        assert service_hub.run(service_hub.start("alice", "research"), ACCOUNTS).strip() == "11111111"
    finally:
        service_hub.service.env["TS_NOTEBOOK_CRYPT_KEY"] = (
            old_key + ";" + service_hub.service.env["TS_NOTEBOOK_CRYPT_KEY"]
        )
        service_hub.service.restart()


def test_nothing_secret_at_rest_or_in_any_log(service_hub):
    # Runs last: every sign-in, renewal and sign-out above went through the service.
    secrets_seen = {s for s in service_hub.emulator.issued_secrets() if s and len(s) > 8}
    at_rest = b"".join(p.read_bytes() for p in service_hub.service.folder.rglob("*") if p.is_file())
    logs = service_hub.log.read_text() + service_hub.service.log.read_text()
    assert not [s for s in secrets_seen if s.encode() in at_rest]
    assert not [s for s in secrets_seen if s in logs]


def test_the_status_bar_of_every_server_of_hers_shows_her_one_sign_in(service_hub, alice):
    """What JupyterLab's status item reads, as it reads it: with the hub user's browser session,
    from a server she never signed in from; it follows her sign-out there, and bob's says his."""
    browser = service_hub.browser("alice")
    research = service_hub.start("alice", "research")
    assert "Signed in to TradeStation" in service_hub.run(research, UNTIL_SIGNED_IN)

    assert browser.get(f"{research}lab").status_code == 200  # JupyterLab's page: the server's cookie
    status = browser.get(f"{research}ts_notebook/api/status")
    assert status.status_code == 200, status.text[:300]
    now = status.json()
    assert now["signed_in"] is True and now["display_name"] == "analyst" and "access_token" not in now
    assert "kept by the hub's ts_notebook service" in now["kept"]

    service_hub.run(alice, "import ts_notebook as ts\nts.logout()")
    deadline = time.monotonic() + 30
    while browser.http.get(f"{research}ts_notebook/api/status", timeout=30).json()["signed_in"]:
        assert time.monotonic() < deadline, "the status never said signed out"
        time.sleep(0.2)

    bobs, server = service_hub.browser("bob"), service_hub.start("bob")
    assert bobs.get(f"{server}lab").status_code == 200
    bob = bobs.get(f"{server}ts_notebook/api/status")
    assert bob.status_code == 200 and bob.json()["signed_in"] is False


def revocations(hub: Hub) -> int:
    return sum(r["path"] == "/oauth/revoke" for r in hub.emulator.requests_seen)


def kept_users(hub: Hub) -> list[str]:
    """Whose sign-ins the vault holds (the user column is the one thing not encrypted)."""
    with sqlite3.connect(hub.service.env["TS_NOTEBOOK_VAULT"]) as db:
        return [row[0] for row in db.execute("SELECT user FROM signins")]


def test_a_deleted_and_remade_hub_user_starts_signed_out_and_the_old_sign_in_is_revoked(service_hub):
    """Delete frank, let a new person become frank: the newcomer never gets the old frank's
    TradeStation token, and that sign-in is revoked and deleted, with no admin step."""
    hub = service_hub
    assert "Signed in" in hub_sign_in(hub, hub.browser("frank"), hub.start("frank"), username="frank-ts").text
    assert hub.service.call(user_token(hub, "frank"), route="api/signin?since=0&timeout=0").json()["signed_in"]
    hub.stop("frank")
    revoked = revocations(hub)

    hub.remake("frank")
    newcomer = user_token(hub, "frank")
    answer = hub.service.call(newcomer, route="api/signin?since=0&timeout=0")
    renewal = hub.service.call(newcomer, "POST", "api/refresh", data=json.dumps({"stale": None}))

    assert answer.status_code == 200 and answer.json()["signed_in"] is False and "access_token" not in answer.json()
    assert renewal.status_code == 409 and renewal.json()["error"] == "not_signed_in"
    assert "Not signed in" in hub.run(hub.start("frank"), STATUS)
    assert revocations(hub) >= revoked + 1 and "frank" not in kept_users(hub)  # (and "revoking it failed" not said)
    retired = find(read_trail(hub.service.audit), event="signed_out", hub_user="frank", reason=USER_REMADE)
    assert len(retired) == 1 and retired[0]["subject"] == "auth0|frank-ts"
    hub.stop("frank")


def test_a_deleted_hub_users_sign_in_is_revoked_and_deleted_on_the_services_schedule(service_hub):
    """Nobody calls for grace once she is deleted: the service's sweep finds her gone."""
    hub = service_hub
    assert "Signed in" in hub_sign_in(hub, hub.browser("grace"), hub.start("grace"), username="grace-ts").text
    hub.stop("grace")
    hub.service.env["TS_NOTEBOOK_SWEEP_EVERY"] = "1"
    hub.service.restart()
    try:
        revoked = revocations(hub)
        assert "grace" in kept_users(hub)

        r = hub.api.delete(f"{hub.url}hub/api/users/grace", timeout=60)
        assert r.status_code == 204, r.text

        eventually_sync(lambda: "grace" not in kept_users(hub), timeout=30, what="grace's sign-in deleted")
        assert revocations(hub) >= revoked + 1  # (other users' sign-ins renew and rotate meanwhile)
        # Revoked, and not "revoking it failed": the reason would say so.
        retired = find(read_trail(hub.service.audit), event="signed_out", hub_user="grace", reason=USER_DELETED)
        assert len(retired) == 1 and retired[0]["subject"] == "auth0|grace-ts"
    finally:
        del hub.service.env["TS_NOTEBOOK_SWEEP_EVERY"]
        hub.service.restart()
        hub.api.post(f"{hub.url}hub/api/users/grace", timeout=60)


def test_the_audit_trail_says_who_signed_in_from_which_server_what_was_refused_and_holds_no_secret(service_hub):
    hub = service_hub
    since = time.time()
    research = hub.start("heidi", "research")
    assert "Signed in" in hub_sign_in(hub, hub.browser("heidi"), research, username="heidi-ts").text
    token = user_token(hub, "heidi")
    made_up = {"code": "made-up", "code_verifier": "v" * 43, "nonce": "n", "redirect_uri": "http://x/cb"}
    assert hub.service.call(token, "POST", "api/signin", data=json.dumps(made_up)).status_code == 400
    assert hub.service.call(token, "POST", "api/refresh", data=json.dumps({"stale": 12})).status_code == 400
    assert hub.service.call(None).status_code == 401
    assert hub.service.call(token, "DELETE").status_code == 200

    secrets_known = [*hub.emulator.issued_secrets(), CLIENT_SECRET, token, hub.service.token]
    secrets_known += [hub.service.env["TS_NOTEBOOK_CRYPT_KEY"], hub.api.headers["Authorization"].split()[1]]
    events = [e for e in read_trail(hub.service.audit, secrets_known) if e["time"] >= iso(since)]
    heidi = find(events, hub_user="heidi")
    assert find(heidi, event="signed_in", outcome="ok", server="research", subject="auth0|heidi-ts")
    assert find(heidi, event="signed_in", outcome="failed", server=None, reason="invalid_grant")
    assert find(heidi, event="refused", outcome="refused", reason="invalid_request")
    assert find(heidi, event="signed_out", outcome="ok", subject="auth0|heidi-ts", reason=None)
    assert find(events, event="refused", hub_user=None, reason="no_token")
    assert all(e["source"] == "hub service" for e in events)
    hub.stop("heidi", "research")


def iso(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_a_token_the_hub_revoked_stops_working_at_the_service_within_seconds(service_hub):
    """The hub's answer about a caller is kept 5 s (60 s before): a stopped server's token, or
    a deleted user's, is refused by then."""
    hub = service_hub
    made = hub.api.post(
        f"{hub.url}hub/api/users/bob/tokens", json={"scopes": [f"access:services!service={SERVICE}"]}, timeout=30
    ).json()
    assert hub.service.call(made["token"], route="api/signin?since=0&timeout=0").status_code == 200

    assert hub.api.delete(f"{hub.url}hub/api/users/bob/tokens/{made['id']}", timeout=30).status_code == 204

    def refused() -> bool:
        return hub.service.call(made["token"], route="api/signin?since=0&timeout=0").status_code == 403

    eventually_sync(refused, timeout=15, what="the revoked token refused")

"""A real JupyterHub (configurable-http-proxy from npm, DummyAuthenticator, local-process
spawner, all on 127.0.0.1): one callback URL registered for the whole hub, per-user sign-in,
named servers, and the owner rule."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from ts_notebook.emulator import Emulator
from ts_notebook.launch import free_port

from ..conftest import CLIENT_ID
from ..parts import Browser, run_in_kernel

ROOT = Path(__file__).resolve().parents[2]
CHP = ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
PASSWORD = secrets.token_urlsafe(12)
SERVICE_TOKEN = secrets.token_hex(24)
CLIENT_SECRET = secrets.token_urlsafe(24)
ACCOUNTS = 'import ts_notebook as ts\nprint(ts.session.get("brokerage/accounts").json()["Accounts"][0]["AccountID"])'


class Hub:
    """The hub process and the calls a test makes to it."""

    def __init__(self, url: str, emulator: Emulator, proc: subprocess.Popen, log: Path) -> None:
        self.url, self.emulator, self.proc, self.log = url, emulator, proc, log
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"token {SERVICE_TOKEN}"

    def browser(self, user: str) -> Browser:
        """A browser logged in to the hub as ``user``."""
        b = Browser(self.url, "")
        b.http.get(f"{self.url}hub/login", timeout=30)
        r = b.http.post(
            f"{self.url}hub/login",
            data={"username": user, "password": PASSWORD, "_xsrf": b.http.cookies.get("_xsrf", "")},
            allow_redirects=False,
            timeout=30,
        )
        assert r.status_code == 302, r.text[:300]
        return b

    def start(self, user: str, server: str = "") -> str:
        """Start a server through the hub API; return its URL prefix once it is ready."""
        path = f"users/{user}/servers/{server}" if server else f"users/{user}/server"
        r = self.api.post(f"{self.url}hub/api/{path}", timeout=60)
        assert r.status_code in (201, 202) or "is already running" in r.text, r.text
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            info = self.api.get(f"{self.url}hub/api/users/{user}", timeout=30).json()["servers"].get(server, {})
            if info.get("ready"):
                return f"{self.url}user/{user}/{server + '/' if server else ''}"
            time.sleep(0.3)
        raise AssertionError(f"{user}'s server {server!r} did not start:\n{self.log.read_text()[-3000:]}")

    def run(self, server_url: str, code: str) -> str:
        """Run ``code`` in a new kernel of that server, over its websocket; return stdout."""
        return run_in_kernel(self.api, server_url, code)


@pytest.fixture(scope="module")
def hub_emulator():
    with Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as em:
        yield em


@pytest.fixture(scope="module")
def hub(hub_emulator, tmp_path_factory):
    if not CHP.exists():
        pytest.fail(f"{CHP} is missing: run `npm ci` in the project folder (.ci/run does)")
    tmp = tmp_path_factory.mktemp("hub")
    port, proxy_api, hub_port = free_port(), free_port(), free_port()
    env = {
        "TS_CLIENT_ID": CLIENT_ID,
        "TS_CLIENT_SECRET": CLIENT_SECRET,
        "TS_SIGNIN_URL": hub_emulator.url,
        "TS_API_URL": f"{hub_emulator.url}/v3",
        "TS_SIM_API_URL": f"{hub_emulator.url}/sim/v3",
        "PYTHONPATH": str(ROOT),
    }
    hub_emulator.add_redirect_uri(f"http://127.0.0.1:{port}/hub/user-redirect/ts_notebook/callback")
    (tmp / "jupyterhub_config.py").write_text(f"""
import sys
from ts_notebook.hub import user_redirect_hook
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.ConfigurableHTTPProxy.command = [{str(CHP)!r}]
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {PASSWORD!r}
c.Authenticator.allowed_users = {{"alice", "bob", "carol", "dave", "erin"}}
c.Authenticator.admin_users = {{"erin"}}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {str(tmp / "home" / "{username}")!r}
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.args = ["--allow-root"]
c.Spawner.environment = {env!r}
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
c.JupyterHub.allow_named_servers = True
c.JupyterHub.user_redirect_hook = user_redirect_hook
c.JupyterHub.db_url = "sqlite:///{tmp / "hub.sqlite"}"
c.JupyterHub.cookie_secret_file = {str(tmp / "cookie_secret")!r}
c.JupyterHub.services = [{{"name": "tester", "api_token": {SERVICE_TOKEN!r}}}]
c.JupyterHub.load_roles = [{{"name": "tester", "services": ["tester"],
                             "scopes": ["admin:users", "admin:servers", "access:servers"]}}]
""")
    log = tmp / "hub.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", "jupyterhub_config.py"],
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:  # the proxy answers 404 before the hub is up: wait for the hub's own 200
            if requests.get(f"{url}hub/api/", timeout=5).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.3)
    else:
        proc.terminate()
        pytest.fail(f"JupyterHub did not start:\n{log.read_text()[-3000:]}")
    yield Hub(url, hub_emulator, proc, log)
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def sign_in(hub: Hub, browser: Browser, server_url: str):
    page = browser.get(f"{server_url}ts_notebook/login")
    assert "username" in page.text, page.text[:500]
    assert (
        "redirect_uri=" + requests.utils.quote(f"{hub.url}hub/user-redirect/ts_notebook/callback", safe="") in page.url
    )
    return browser.submit(page, "allow", username="analyst")


def test_one_callback_url_signs_in_each_user_to_their_own_server(hub):
    alice, bob = hub.browser("alice"), hub.browser("bob")
    alice_server, bob_server = hub.start("alice"), hub.start("bob")

    done = sign_in(hub, alice, alice_server)

    assert done.status_code == 200 and "Signed in to TradeStation as analyst" in done.text
    assert any("/hub/user-redirect/ts_notebook/callback?" in u for u in alice.visited)
    assert hub.run(alice_server, ACCOUNTS).strip() == "11111111"
    assert "Not signed in" in hub.run(bob_server, "import ts_notebook as ts\nprint(ts.status())")

    # Alice's callback replayed in Bob's browser lands on Bob's server, which refuses it.
    callback = next(u for u in alice.visited if "/hub/user-redirect/ts_notebook/callback?" in u)
    replay = bob.get(callback)
    assert replay.status_code == 400 and "unknown to this Jupyter server" in replay.text
    assert "Not signed in" in hub.run(bob_server, "import ts_notebook as ts\nprint(ts.status())")
    assert hub.run(alice_server, ACCOUNTS).strip() == "11111111"

    # Kernels never see the client secret, though the spawner's environment carried it.
    probe = "import os; print(sorted(k for k in os.environ if k.startswith('TS_')))"
    assert (
        hub.run(alice_server, probe).strip() == "['TS_API_URL', 'TS_CLIENT_ID', 'TS_NOTEBOOK_BROKER', "
        "'TS_SIGNIN_URL', 'TS_SIM_API_URL']"
    )


def test_a_named_server_signs_in_through_the_same_url(hub):
    carol = hub.browser("carol")
    research = hub.start("carol", "research")

    done = sign_in(hub, carol, research)

    assert "Signed in to TradeStation as analyst" in done.text
    assert any(u.startswith(f"{research}ts_notebook/callback?") for u in carol.visited)  # routed by the hook
    assert hub.run(research, ACCOUNTS).strip() == "11111111"

    # Without the hook the hub sends the callback to the default server, which forwards it.
    default = hub.start("carol")
    carol.get(f"{default}lab")  # the hub's OAuth for that server gives this browser its cookie
    page = carol.get(f"{research}ts_notebook/login")
    state = page.url.split("state=", 1)[1].split("&", 1)[0]
    landed = carol.http.get(
        f"{default}ts_notebook/callback", params={"state": state, "code": "c"}, allow_redirects=False, timeout=30
    )
    assert landed.status_code == 302
    assert landed.headers["Location"].startswith("/user/carol/research/ts_notebook/callback?")


def test_only_the_servers_owner_may_read_its_token(hub):
    dave = hub.browser("dave")
    server = hub.start("dave")
    sign_in(hub, dave, server)

    as_admin = hub.api.get(f"{server}ts_notebook/api/token", timeout=30)  # a hub admin's token
    as_owner = dave.get(f"{server}ts_notebook/api/token")

    assert as_admin.status_code == 403 and "access_token" not in as_admin.text
    assert as_owner.status_code == 200 and as_owner.json()["signed_in"] is True


def test_a_hub_admin_reaches_a_users_server_but_cannot_start_a_sign_in_there(hub):
    dave_server = hub.start("dave")
    erin = hub.browser("erin")  # a hub admin: the admin role has access:servers

    consent = erin.get(f"{dave_server}lab")  # JupyterHub asks the admin to confirm, then lets her in ...
    fields = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', consent.text)
    opened = erin._follow(erin.http.post(consent.url, data=fields, allow_redirects=False, timeout=30))
    page = erin.get(f"{dave_server}ts_notebook/login")  # ... ts_notebook does not start her sign-in

    assert opened.status_code == 200
    assert page.status_code == 403 and "Only the owner of this Jupyter server" in page.text
    assert not any(u.startswith(f"{hub.emulator.url}/authorize") for u in erin.visited)


@pytest.mark.parametrize("name", ["..", ".", "%2e%2e", "a%2Fb"])
def test_a_callback_naming_an_odd_server_stays_on_the_users_own_server(hub, name):
    alice = hub.browser("alice")
    server = hub.start("alice")
    alice.get(f"{server}lab")  # the hub's OAuth for that server gives this browser its cookie

    direct = alice.http.get(
        f"{server}ts_notebook/callback", params={"code": "c", "state": f"{name}.Zz"}, allow_redirects=False, timeout=30
    )
    via_hub = alice.get(f"{hub.url}hub/user-redirect/ts_notebook/callback?code=c&state={name}.Zz")

    assert direct.status_code == 400 and "Location" not in direct.headers and "names no server" in direct.text
    assert via_hub.status_code == 400 and "unknown to this Jupyter server" in via_hub.text
    assert all(u.startswith((f"{hub.url}hub/", server)) for u in alice.visited), alice.visited


def test_nothing_secret_reaches_the_hub_or_server_logs(hub):
    # Runs last in this module: the sign-ins above all went through the hub and its servers.
    assert any(g["grant_type"] == "authorization_code" for g in hub.emulator.grants)
    log = hub.log.read_text()
    leaked = [line for line in log.splitlines() if any(s and s in line for s in hub.emulator.issued_secrets())]
    assert not leaked, "\n".join(leaked)

"""A real JupyterHub (configurable-http-proxy from npm, DummyAuthenticator, local-process
spawner, all on 127.0.0.1): one callback URL registered for the whole hub, per-user sign-in,
named servers, and the owner rule."""

from __future__ import annotations

import re
import secrets

import pytest

from ts_notebook.emulator import Emulator

from ..conftest import CLIENT_ID
from .conftest import ACCOUNTS, ROOT, hub_sign_in, running_hub

CLIENT_SECRET = secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def hub_emulator():
    with Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as em:
        yield em


@pytest.fixture(scope="module")
def hub(hub_emulator, tmp_path_factory):
    env = {
        "TS_CLIENT_ID": CLIENT_ID,
        "TS_CLIENT_SECRET": CLIENT_SECRET,
        "TS_SIGNIN_URL": hub_emulator.url,
        "TS_API_URL": f"{hub_emulator.url}/v3",
        "TS_SIM_API_URL": f"{hub_emulator.url}/sim/v3",
        "PYTHONPATH": str(ROOT),
    }
    with running_hub(tmp_path_factory.mktemp("hub"), hub_emulator, env) as hub:
        yield hub


def test_one_callback_url_signs_in_each_user_to_their_own_server(hub):
    alice, bob = hub.browser("alice"), hub.browser("bob")
    alice_server, bob_server = hub.start("alice"), hub.start("bob")

    done = hub_sign_in(hub, alice, alice_server)

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

    done = hub_sign_in(hub, carol, research)

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
    hub_sign_in(hub, dave, server)

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
    # Run alone, it makes one of its own.
    if not any(g["grant_type"] == "authorization_code" for g in hub.emulator.grants):
        hub_sign_in(hub, hub.browser("alice"), hub.start("alice"))
    assert any(g["grant_type"] == "authorization_code" for g in hub.emulator.grants)
    log = hub.log.read_text()
    leaked = [line for line in log.splitlines() if any(s and s in line for s in hub.emulator.issued_secrets())]
    assert not leaked, "\n".join(leaked)

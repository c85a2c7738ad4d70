"""``ts-notebook-hub-service`` refuses to start, with one line that says what to set, when it
is not run by a hub, has no key, or has no usable encryption key; and it writes nothing then."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from ts_notebook.config import Settings
from ts_notebook.hubservice.vault import Vault, VaultBackend
from ts_notebook.oauth import OAuthClient
from ts_notebook.store import Identity, Store

from ...conftest import CLIENT_ID
from ...parts.kernels import environ_without_settings
from ...parts.signin import REDIRECT, approve

ROOT = Path(__file__).resolve().parents[3]

HUB = {
    "JUPYTERHUB_API_TOKEN": secrets.token_hex(16),
    "JUPYTERHUB_API_URL": "http://127.0.0.1:1/hub/api",
    "JUPYTERHUB_SERVICE_NAME": "ts-notebook",
    "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:1",
    "JUPYTERHUB_SERVICE_PREFIX": "/services/ts-notebook/",
}
GOOD = {**HUB, "TS_CLIENT_ID": "key", "TS_NOTEBOOK_CRYPT_KEY": secrets.token_hex(32)}


def run(tmp_path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = environ_without_settings()
    base["PYTHONPATH"] = str(ROOT)
    vault = str(tmp_path / "vault" / "signins.sqlite")
    return subprocess.run(
        [sys.executable, "-m", "ts_notebook.hubservice", "--vault", vault, *args],
        env={**base, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"TS_NOTEBOOK_CRYPT_KEY": None}, "Set TS_NOTEBOOK_CRYPT_KEY to a 32-byte key (make one with: openssl rand"),
        ({"TS_NOTEBOOK_CRYPT_KEY": "not-a-key"}, "not 32 bytes in hex or base64"),
        ({"TS_NOTEBOOK_CRYPT_KEY": secrets.token_hex(31)}, "not 32 bytes in hex or base64"),
        ({"TS_CLIENT_ID": None}, "TS_CLIENT_ID"),
        ({"JUPYTERHUB_API_TOKEN": None}, "JUPYTERHUB_API_TOKEN not set: run this as a JupyterHub service"),
        ({"JUPYTERHUB_SERVICE_URL": "http://127.0.0.1"}, "names no port"),
    ],
)
def test_it_will_not_start_without_what_it_needs_and_says_what_to_set(tmp_path, change, says):
    env = {k: v for k, v in {**GOOD, **change}.items() if v is not None}

    ran = run(tmp_path, env)

    assert ran.returncode == 2, ran.stderr
    assert says in ran.stderr and "Traceback" not in ran.stderr, ran.stderr
    assert not (tmp_path / "vault").exists()  # refused before anything is written


def test_forget_revokes_a_users_kept_sign_in_and_deletes_it(tmp_path, emulator, client_secret):
    crypt_key = secrets.token_hex(32)
    settings = Settings.load(environ={}, client_id=CLIENT_ID, client_secret=client_secret, signin_url=emulator.url)
    client = OAuthClient(settings)
    pending = client.begin_login(REDIRECT)
    tokens = client.exchange(pending, approve(pending)["code"])
    vault = Vault(tmp_path / "vault" / "signins.sqlite", crypt_key)
    Store(VaultBackend(vault, "alice"), Identity.of(settings)).remember(tokens)
    env = {"TS_CLIENT_ID": CLIENT_ID, "TS_CLIENT_SECRET": client_secret, "TS_SIGNIN_URL": emulator.url}

    ran = run(tmp_path, {**env, "TS_NOTEBOOK_CRYPT_KEY": crypt_key}, "--forget", "alice", "--forget", "bob")

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == ["alice: revoked at the sign-in service and deleted", "bob: nothing kept"]
    assert vault.get("alice") is None and vault.users() == []
    grant = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}
    key = {"client_id": CLIENT_ID, "client_secret": client_secret}
    assert not requests.post(f"{emulator.url}/oauth/token", data={**grant, **key}, timeout=10).ok

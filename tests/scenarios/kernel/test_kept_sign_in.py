"""A kept sign-in outlives the process: terminal IPython started twice, and several real
processes sharing one file store while the emulator rotates refresh tokens every few seconds."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pexpect

from ts_notebook.config import Settings
from ts_notebook.kernel.local import LocalSource
from ts_notebook.kernel.state import Status

from ...conftest import CLIENT_ID
from ...parts.kernels import PROMPT, authorize_url, spawn_ipython
from ...parts.signin import approve, sign_in_at
from .test_local import ACCOUNTS

# Each process calls the API for this long, while 3-second tokens expire again and again.
RUN_FOR = 9.0
WORKER = """
import json, sys, time
from ts_notebook.kernel import api
session, codes = api.session(), []
deadline = time.time() + float(sys.argv[1])
while time.time() < deadline:
    codes.append(session.get("brokerage/accounts").status_code)
    time.sleep(0.05)
print(json.dumps({"codes": sorted(set(codes)), "calls": len(codes)}))
"""


SIGN_IN = """
from ts_notebook.kernel.local import LocalSource
from tests.parts.signin import approve
attempt = LocalSource().begin(listen=False)
print(attempt.complete(approve(attempt.pending), attempt.browser_key)[1])
"""


def sign_in_elsewhere(env: dict[str, str]) -> None:
    """Sign in from another process, which then exits: its sign-in stays in the store."""
    done = subprocess.run([sys.executable, "-c", SIGN_IN], env=env, capture_output=True, text=True, timeout=60)
    assert "Signed in to TradeStation as analyst" in done.stdout, done.stderr[-2000:]


def kept_env(local_env: dict[str, str], tmp_path) -> dict[str, str]:
    return {**local_env, "TS_TOKEN_STORE": "file", "JUPYTER_DATA_DIR": str(tmp_path / "data")}


async def test_terminal_ipython_started_again_needs_no_browser(local_env, emulator, tmp_path):
    env = kept_env(local_env, tmp_path)
    first = spawn_ipython(env)
    try:
        first.sendline("%ts_login")
        url = authorize_url(first)
        await asyncio.to_thread(sign_in_at, url)
        first.expect("Signed in to TradeStation as analyst.")
        first.expect(PROMPT)
    finally:
        first.sendline("exit")
        first.expect(pexpect.EOF)

    second = spawn_ipython(env)
    try:
        second.sendline("%ts_status")
        second.expect(r"Signed in to TradeStation as analyst .*\r\nSign-in kept across restarts in the file \S+")
        second.expect(PROMPT)
        second.sendline(ACCOUNTS)
        second.expect("11111111")
        second.expect(PROMPT)
        second.sendline("%ts_login")
        second.expect(r"Signed in to TradeStation as analyst")  # nothing to open: already signed in
        second.expect(PROMPT)
        assert "Sign in to TradeStation in your browser" not in second.before
    finally:
        second.terminate(force=True)
    # One sign-in; its access token was still good, so the second process sent nothing.
    assert [g["grant_type"] for g in emulator.grants] == ["authorization_code"]


async def test_logout_forgets_the_kept_sign_in(local_env, emulator, tmp_path):
    env = kept_env(local_env, tmp_path)
    child = spawn_ipython(env)
    try:
        child.sendline("%ts_login")
        await asyncio.to_thread(sign_in_at, authorize_url(child))
        child.expect("Signed in to TradeStation as analyst.")
        child.sendline("%ts_logout")
        child.expect(r"Signed out of TradeStation \(the sign-in was revoked\)\.")
        child.expect(PROMPT)
    finally:
        child.terminate(force=True)
    assert not (tmp_path / "data" / "ts_notebook" / "signin.json").exists()
    again = spawn_ipython(env)
    try:
        again.sendline("%ts_status")
        again.expect("Not signed in to TradeStation. Run %ts_login to sign in.")
    finally:
        again.terminate(force=True)


def test_a_revoked_kept_sign_in_leaves_the_user_signed_out_once(
    local_env, emulator, client_secret, tmp_path, monkeypatch
):
    env = kept_env(local_env, tmp_path)
    monkeypatch.setenv("JUPYTER_DATA_DIR", env["JUPYTER_DATA_DIR"])
    emulator.access_token_lifetime = 1  # due for renewal at the next start
    sign_in_elsewhere(env)
    emulator.revoke_refresh_tokens()  # revoked at the provider (another device signed out, say)
    time.sleep(1)

    again = LocalSource(
        Settings.load(
            environ={}, client_id=CLIENT_ID, client_secret=client_secret, signin_url=emulator.url, token_store="file"
        )
    )

    snap = again.current()
    assert not snap.signed_in and "Run %ts_login" in (snap.error or "")
    assert not (tmp_path / "data" / "ts_notebook" / "signin.json").exists()  # not tried again next time
    assert [g["error"] for g in emulator.grants] == [None, "invalid_grant"]


def test_processes_sharing_a_store_spend_each_refresh_token_once(local_env, emulator, tmp_path):
    emulator.rotate_refresh_tokens = True
    emulator.access_token_lifetime = 3
    env = kept_env(local_env, tmp_path)
    sign_in_elsewhere(env)

    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(RUN_FOR)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [w.communicate(timeout=120) for w in workers]

    for out, err in results:
        assert json.loads(out)["codes"] == [200], err[-2000:]
    grants = emulator.timed_grants
    assert [g for g in grants if not g["ok"]] == []  # no refresh token was ever sent twice
    refreshes = [g["at"] for g in grants if g["grant_type"] == "refresh_token"]
    # Tokens live 3 s and are renewed 1 s early: one renewal per 2 s for the three processes
    # together (each alone would make its own), give or take the start and the end.
    assert 3 <= len(refreshes) <= RUN_FOR / 2 + 3, refreshes
    gaps = [b - a for a, b in zip(refreshes, refreshes[1:], strict=False)]
    assert min(gaps) > 1.0, gaps  # never two renewals of one expiry


SIGN_IN_AS_TRADER = SIGN_IN.replace("approve(attempt.pending)", 'approve(attempt.pending, username="trader")')


def test_a_store_another_account_signed_in_to_is_never_taken_over(
    local_env, emulator, client_secret, tmp_path, monkeypatch
):
    env = kept_env(local_env, tmp_path)
    monkeypatch.setenv("JUPYTER_DATA_DIR", env["JUPYTER_DATA_DIR"])
    settings = Settings.load(
        environ={},
        client_id=CLIENT_ID,
        client_secret=client_secret,
        signin_url=emulator.url,
        token_store="file",
    )
    ours = LocalSource(settings)  # this process: signed in as analyst, kept in the shared file
    attempt = ours.begin(listen=False)
    attempt.complete(approve(attempt.pending), attempt.browser_key)
    # A terminal of the same OS user signs in as another TradeStation account, in the same file.
    done = subprocess.run(
        [sys.executable, "-c", SIGN_IN_AS_TRADER], env=env, capture_output=True, text=True, timeout=60
    )
    assert "Signed in to TradeStation as trader" in done.stdout, done.stderr[-2000:]

    ours.force_refresh(ours.snapshot.access_token)  # our next renewal, through the shared store

    assert ours.tokens.display_name == "analyst"  # still ours: orders never go to the other account
    status = str(Status.of(ours.current()))
    assert "trader, another TradeStation account" in status and "analyst" in status, status
    kept = json.loads((tmp_path / "data" / "ts_notebook" / "signin.json").read_text())
    assert kept["user"]["name"] == "trader"  # the store stays the newer sign-in's

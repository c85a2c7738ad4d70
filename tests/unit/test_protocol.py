"""The server-to-kernel protocol's two forms: the runtime file, and the snapshot on the wire."""

from __future__ import annotations

import json
import stat

import pytest

from ts_notebook import keeper
from ts_notebook.config import Settings
from ts_notebook.protocol import VERSION, OtherVersion, RuntimeInfo, Snapshot
from ts_notebook.tokens import TokenSet


def test_the_runtime_file_is_private_and_reads_back(tmp_path):
    info = RuntimeInfo(
        url="https://127.0.0.1:8888/base/", base_url="/base/", key="k" * 43, pid=123, cert_sha256="ab" * 32
    )
    path = tmp_path / "runtime" / "ts_notebook-1.json"

    info.write(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert RuntimeInfo.read(path) == info
    assert (
        info.login_path == "/base/ts_notebook/login"
        and info.api_url("token") == "https://127.0.0.1:8888/base/ts_notebook/api/token"
    )
    assert "k" * 43 not in repr(info)


@pytest.mark.parametrize(
    "content",
    [{"protocol": VERSION + 1, "url": "u", "key": "k"}, {"protocol": VERSION}, []],
    ids=["newer", "no-url", "not-an-object"],
)
def test_a_runtime_file_of_another_version_says_so(tmp_path, content):
    path = tmp_path / "f.json"
    path.write_text(json.dumps(content))
    with pytest.raises(OtherVersion):
        RuntimeInfo.read(path)


def test_the_snapshot_travels_with_the_token_only_when_asked_and_expiry_as_seconds_left():
    settings = Settings.load(environ={}, client_id="c", api_url="https://api.example/v3")
    tokens = TokenSet.from_response(
        {"access_token": "secret-a", "expires_in": 1200, "scope": "openid x"}, claims={"name": "Ann"}, now=1000.0
    )
    snap = Snapshot.of(7, tokens, settings, login_pending=True)

    status = snap.to_wire(include_token=False, now=1100.0)
    wire = snap.to_wire(include_token=True, now=1100.0)
    back = Snapshot.from_wire(json.loads(json.dumps(wire)), now=5000.0)  # the kernel's clock differs

    assert "access_token" not in status and status["expires_in"] == 1100.0
    assert back.access_token == "secret-a" and back.expires_at == 5000.0 + 1100.0
    assert (back.version, back.display_name, back.scopes, back.login_pending) == (7, "Ann", ("openid", "x"), True)
    assert back.api_origins == ("https://api.example:443", "https://sim-api.tradestation.com:443")


def test_signed_out_has_no_expiry_on_the_wire():
    snap = Snapshot.of(1, None, Settings.load(environ={}), error="Run %ts_login")
    wire = snap.to_wire(include_token=True)
    assert wire["signed_in"] is False and "expires_in" not in wire and "access_token" not in wire
    assert Snapshot.from_wire(wire).error == "Run %ts_login"


@pytest.mark.parametrize("renews", [True, False], ids=["refresh-token", "none"])
def test_the_state_for_people_says_when_the_sign_in_renews_and_only_if_it_does(renews):
    settings = Settings.load(environ={}, client_id="c")
    tokens = TokenSet.from_response(
        {"access_token": "a", "expires_in": 1200, "scope": "openid"}, claims={"name": "Ann"}, now=1000.0
    )
    status = Snapshot.of(7, tokens, settings, renews=renews).to_wire(include_token=False, now=1100.0)
    assert status["display_name"] == "Ann"
    if renews:  # the keeper's rule: RENEW_BEFORE (5 min) before expiry, a third of a short lifetime
        assert status["renews_in"] == 1100.0 - min(keeper.RENEW_BEFORE, 1200 / 3)
    else:  # no refresh token: it ends when the access token expires
        assert "renews_in" not in status

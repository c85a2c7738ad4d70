"""The protocol client against the emulator: a real OIDC provider on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import socket
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from ts_notebook.config import Settings
from ts_notebook.errors import OAuthError
from ts_notebook.oauth import OAuthClient, ProviderMetadata, check_metadata, pkce_challenge

from ..conftest import CLIENT_ID
from ..parts.fakes import EchoingRefusal, serve_on_loopback
from ..parts.signin import REDIRECT, approve


@pytest.fixture
def client(emulator, client_secret) -> OAuthClient:
    return OAuthClient(
        Settings.load(environ={}, client_id=CLIENT_ID, client_secret=client_secret, signin_url=emulator.url)
    )


def test_the_authorize_url_carries_state_pkce_nonce_audience_and_scopes(client, emulator):
    pending = client.begin_login(REDIRECT)
    q = parse_qs(urlsplit(pending.authorize_url).query)

    assert pending.authorize_url.startswith(f"{emulator.url}/authorize?")
    assert q["state"] == [pending.state] and len(pending.state) >= 43  # 32 random bytes
    assert q["code_challenge"] == [pkce_challenge(pending.verifier)] and q["code_challenge_method"] == ["S256"]
    assert q["nonce"] == [pending.nonce] and q["audience"] == ["https://api.tradestation.com"]
    assert q["scope"] == ["openid profile offline_access MarketData ReadAccount"]
    assert q["redirect_uri"] == [REDIRECT]


def test_discovery_falls_back_to_the_documented_paths():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    client = OAuthClient(Settings.load(environ={}, client_id="x", signin_url=dead), timeout=(1, 1))
    meta = client.metadata()
    assert (meta.issuer, meta.token_endpoint, meta.revocation_endpoint) == (
        f"{dead}/",
        f"{dead}/oauth/token",
        f"{dead}/oauth/revoke",
    )
    assert client.begin_login(REDIRECT).authorize_url.startswith(f"{dead}/authorize?")


def test_code_exchange_verifies_the_id_token_and_names_the_user(client, emulator):
    pending = client.begin_login(REDIRECT)
    callback = approve(pending)
    assert callback["state"] == pending.state

    tokens = client.exchange(pending, callback["code"])

    assert tokens.display_name == "analyst" and tokens.refresh_token
    assert tokens.lifetime == 1200 and "ReadAccount" in tokens.scopes
    with pytest.raises(OAuthError) as replay:
        client.exchange(pending, callback["code"])
    assert replay.value.error == "invalid_grant" and replay.value.permanent
    assert "Run %ts_login" in str(replay.value)


def test_a_nonce_that_does_not_match_is_refused(client):
    pending = client.begin_login(REDIRECT)
    code = approve(pending)["code"]
    pending.nonce = "another-login"
    with pytest.raises(OAuthError, match="nonce does not match"):
        client.exchange(pending, code)


def test_deny_comes_back_as_access_denied(client):
    callback = approve(client.begin_login(REDIRECT), decision="deny")
    assert callback["error"] == "access_denied" and "did not authorize" in callback["error_description"]


@pytest.mark.parametrize("rotate", [False, True], ids=["fixed-refresh-token", "rotating-refresh-token"])
def test_refresh_keeps_the_newest_refresh_token(client, emulator, rotate):
    emulator.rotate_refresh_tokens = rotate
    pending = client.begin_login(REDIRECT)
    first = client.exchange(pending, approve(pending)["code"])

    second = client.refresh(first)
    third = client.refresh(second)

    assert len({first.access_token, second.access_token, third.access_token}) == 3
    assert (second.refresh_token != first.refresh_token) is rotate
    assert third.display_name == "analyst"
    if rotate:
        with pytest.raises(OAuthError, match="invalid_grant"):
            client.refresh(first)


def test_an_unknown_signing_key_makes_the_client_refetch_the_jwks_once(client, emulator):
    pending = client.begin_login(REDIRECT)
    tokens = client.exchange(pending, approve(pending)["code"])
    emulator.rotate_signing_key()
    jwks_fetches = sum(r["path"].endswith("jwks.json") for r in emulator.requests_seen)

    renewed = client.refresh(tokens)  # its id_token is signed with the new key

    assert renewed.display_name == "analyst"
    assert sum(r["path"].endswith("jwks.json") for r in emulator.requests_seen) == jwks_fetches + 1


@pytest.mark.parametrize("alg", ["HS256", "none"])
def test_id_tokens_not_signed_with_rs256_are_refused(client, emulator, alg):
    claims = {"iss": emulator.url + "/", "aud": CLIENT_ID, "sub": "x", "iat": 0, "exp": 2**31}
    forged = jwt.encode(claims, "k" * 32 if alg == "HS256" else None, algorithm=alg)
    with pytest.raises(OAuthError, match="invalid_id_token"):
        client.verify_id_token(forged)


def test_revoke_ends_the_refresh_token(client):
    pending = client.begin_login(REDIRECT)
    tokens = client.exchange(pending, approve(pending)["code"])
    client.revoke(tokens.refresh_token)
    with pytest.raises(OAuthError) as exc:
        client.refresh(tokens)
    assert exc.value.error == "invalid_grant"


def test_provider_errors_carry_error_description_and_what_to_do(emulator):
    bad = OAuthClient(Settings.load(environ={}, client_id=CLIENT_ID, client_secret="wrong", signin_url=emulator.url))
    pending = bad.begin_login(REDIRECT)
    with pytest.raises(OAuthError) as exc:
        bad.exchange(pending, approve(pending)["code"])
    assert exc.value.error == "invalid_client" and exc.value.description
    assert "Check TS_CLIENT_ID and TS_CLIENT_SECRET" in str(exc.value)
    assert not any(s in str(exc.value) for s in emulator.issued_secrets())


def test_a_network_failure_is_a_passing_oauth_error(client, emulator):
    pending = client.begin_login(REDIRECT)
    code = approve(pending)["code"]
    emulator.stop()
    with pytest.raises(OAuthError) as exc:
        client.exchange(pending, code)
    assert exc.value.error == "network_error" and not exc.value.permanent
    assert "?" not in str(exc.value)  # no query string in the message


@pytest.mark.parametrize(
    "jwks",
    [[], {}, {"keys": "x"}, {"keys": [1, "k", {"kty": "EC"}]}, "text"],
    ids=["list", "empty", "keys-not-a-list", "no-rsa-key", "string"],
)
def test_a_malformed_jwks_is_an_oauth_error(client, emulator, jwks):
    pending = client.begin_login(REDIRECT)
    code = approve(pending)["code"]
    emulator.jwks_override = jwks

    with pytest.raises(OAuthError) as exc:
        client.exchange(pending, code)

    assert exc.value.error == "invalid_id_token" and "JWKS" in exc.value.description


def test_an_id_token_without_kid_uses_the_one_signing_key(client, emulator):
    emulator.sign_without_kid = True
    pending = client.begin_login(REDIRECT)
    assert client.exchange(pending, approve(pending)["code"]).display_name == "analyst"


def test_an_id_token_without_kid_is_refused_when_the_jwks_has_several_keys(client, emulator):
    emulator.sign_without_kid = True
    key = emulator._state.jwks()["keys"][0]
    emulator.jwks_override = {"keys": [key, {**key, "kid": "another"}]}
    pending = client.begin_login(REDIRECT)
    with pytest.raises(OAuthError, match="names no key and the JWKS has several"):
        client.exchange(pending, approve(pending)["code"])


@pytest.mark.parametrize("skew", [-300, 300], ids=["provider-behind", "provider-ahead"])
def test_a_provider_clock_minutes_off_still_signs_in(client, emulator, skew):
    emulator.clock_skew = skew
    pending = client.begin_login(REDIRECT)
    assert client.exchange(pending, approve(pending)["code"]).display_name == "analyst"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"issuer": "https://evil.example/"}, "names another issuer"),
        ({"issuer": 5}, "malformed"),
    ],
    ids=["other-issuer", "issuer-not-text"],
)
def test_discovery_for_another_issuer_is_refused(client, emulator, overrides, message):
    emulator.discovery_overrides = overrides
    with pytest.raises(OAuthError, match=message) as exc:
        client.begin_login(REDIRECT)
    assert exc.value.error == "invalid_discovery"


def test_discovery_endpoints_must_be_https_unless_the_issuer_is_this_machine(emulator):
    # The emulator on 127.0.0.1 may use http; a remote issuer may not.
    meta = OAuthClient(Settings.load(environ={}, client_id=CLIENT_ID, signin_url=emulator.url)).metadata()
    assert meta.token_endpoint.startswith("http://127.0.0.1:")
    remote = ProviderMetadata(
        "https://signin.example/",
        "https://signin.example/authorize",
        "http://signin.example/oauth/token",
        "https://signin.example/oauth/revoke",
        "https://signin.example/jwks.json",
    )
    with pytest.raises(OAuthError, match="is not an https endpoint"):
        check_metadata(remote, "https://signin.example")
    check_metadata(
        dataclasses.replace(remote, token_endpoint="https://signin.example/oauth/token"), "https://signin.example"
    )


def test_a_refusal_that_quotes_the_request_back_carries_none_of_its_secrets(client, emulator):
    hostile = serve_on_loopback(EchoingRefusal)  # the token endpoint quotes what it was sent
    emulator.discovery_overrides = {"token_endpoint": f"http://127.0.0.1:{hostile.server_port}/oauth/token"}
    try:
        pending = client.begin_login(REDIRECT)
        code = approve(pending)["code"]
        with pytest.raises(OAuthError) as refused:
            client.exchange(pending, code)
    finally:
        hostile.shutdown()

    shown = str(refused.value)
    assert "cannot use" in shown and "[redacted]" in shown  # the hostile reply was read
    assert code not in shown and pending.verifier not in shown and client.settings.client_secret not in shown


def test_the_reason_of_a_failed_aside_is_the_error_code_alone():
    assert OAuthError("invalid_request", "token=r3Ls... echoed").reason == "invalid_request"
    assert OAuthError("token=r3Ls echoed", "").reason == "an unreadable error"

"""The TradeStation emulator, driven over real loopback HTTP with ``requests``."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests

from ts_notebook.emulator import DEFAULT_REDIRECT_URIS, Emulator

REPO_ROOT = Path(__file__).resolve().parents[3]
CALLBACK = "http://localhost:3000"
SECRET = "s3cr3t-" + "x" * 24
SCOPE = "openid profile offline_access MarketData ReadAccount"


# -- helpers ---------------------------------------------------------------------------------


class FormInputs(HTMLParser):
    """Collects ``name -> value`` of every input in a page, plus element ids."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[str, str] = {}
        self.ids: set[str] = set()
        self.form_attrs: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if attr.get("id"):
            self.ids.add(attr["id"] or "")
        if tag == "form":
            self.form_attrs = attr
        if tag == "input" and attr.get("name"):
            self.inputs[attr["name"] or ""] = attr.get("value") or ""


def parse_form(html: str) -> FormInputs:
    parser = FormInputs()
    parser.feed(html)
    return parser


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_params(em: Emulator, challenge: str | None, **overrides: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": em.client_id,
        "redirect_uri": CALLBACK,
        "scope": SCOPE,
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
        "audience": "https://api.tradestation.com",
    }
    if challenge is not None:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    params.update(overrides)
    return params


def consent(
    em: Emulator, params: dict[str, str], decision: str = "allow", username: str = "analyst"
) -> requests.Response:
    """GET the sign-in page, then submit its form the way a browser would."""
    page = requests.get(em.url + "/authorize", params=params, timeout=5)
    assert page.status_code == 200, page.text
    form = parse_form(page.text).inputs
    form.update(username=username, decision=decision)
    return requests.post(em.url + "/authorize", data=form, allow_redirects=False, timeout=5)


def callback_query(resp: requests.Response) -> dict[str, str]:
    assert resp.status_code == 302
    location = resp.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def token_call(em: Emulator, data: dict[str, str], **kwargs: Any) -> requests.Response:
    return requests.post(em.url + "/oauth/token", data=data, timeout=5, **kwargs)


def client_auth(em: Emulator, secret: str | None) -> dict[str, str]:
    return {"client_id": em.client_id, **({"client_secret": secret} if secret else {})}


def sign_in(em: Emulator, secret: str | None = None, scope: str = SCOPE) -> dict[str, Any]:
    """A complete code flow with PKCE; returns the token reply plus the nonce used."""
    verifier, challenge = pkce()
    params = authorize_params(em, challenge, scope=scope)
    code = callback_query(consent(em, params))["code"]
    resp = token_call(
        em,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
            **client_auth(em, secret),
        },
    )
    assert resp.status_code == 200, resp.text
    return {**resp.json(), "nonce": params["nonce"]}


def refresh(em: Emulator, refresh_token: str, secret: str | None = None) -> requests.Response:
    return token_call(em, {"grant_type": "refresh_token", "refresh_token": refresh_token, **client_auth(em, secret)})


def api(em: Emulator, path: str, token: str | None, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(em.url + path, headers=headers, timeout=5, **kwargs)


def verify_id_token(em: Emulator, id_token: str) -> dict[str, Any]:
    jwks = requests.get(em.url + "/.well-known/jwks.json", timeout=5).json()
    kid = jwt.get_unverified_header(id_token)["kid"]
    key = {k.key_id: k for k in jwt.PyJWKSet.from_dict(jwks).keys}[kid]
    return jwt.decode(id_token, key, algorithms=["RS256"], audience=em.client_id, issuer=em.url + "/")


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., Emulator]]:
    started: list[Emulator] = []

    def make(**kwargs: Any) -> Emulator:
        em = Emulator(**kwargs).start()
        started.append(em)
        return em

    yield make
    for em in started:
        em.stop()


@pytest.fixture
def public(make_emulator: Callable[..., Emulator]) -> Emulator:
    return make_emulator(client_id="public-client")


@pytest.fixture
def confidential(make_emulator: Callable[..., Emulator]) -> Emulator:
    return make_emulator(client_id="secret-client", client_secret=SECRET)


# -- discovery and keys ------------------------------------------------------------------------


def test_discovery_and_jwks(public: Emulator) -> None:
    doc = requests.get(public.url + "/.well-known/openid-configuration", timeout=5).json()
    assert doc["issuer"] == public.url + "/"
    assert doc["authorization_endpoint"] == public.url + "/authorize"
    assert doc["token_endpoint"] == public.url + "/oauth/token"
    assert doc["revocation_endpoint"] == public.url + "/oauth/revoke"
    assert doc["userinfo_endpoint"] == public.url + "/userinfo"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert "offline_access" in doc["scopes_supported"]
    jwks = requests.get(doc["jwks_uri"], timeout=5).json()
    (key,) = jwks["keys"]
    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig") and key["kid"]
    assert "d" not in key  # public half only


def test_rotate_signing_key_serves_only_the_new_key(public: Emulator) -> None:
    old_kid = requests.get(public.url + "/.well-known/jwks.json", timeout=5).json()["keys"][0]["kid"]
    new_kid = public.rotate_signing_key()
    kids = [k["kid"] for k in requests.get(public.url + "/.well-known/jwks.json", timeout=5).json()["keys"]]
    assert kids == [new_kid] and new_kid != old_kid
    tokens = sign_in(public)
    assert jwt.get_unverified_header(tokens["id_token"])["kid"] == new_kid
    assert verify_id_token(public, tokens["id_token"])["sub"] == "auth0|analyst"


# -- the code flow -----------------------------------------------------------------------------


@pytest.mark.parametrize("client_kind", ["public-pkce", "secret-post", "secret-basic", "secret-json"])
def test_code_flow(make_emulator: Callable[..., Emulator], client_kind: str) -> None:
    secret = None if client_kind == "public-pkce" else SECRET
    em = make_emulator(client_secret=secret)
    verifier, challenge = pkce()
    params = authorize_params(em, challenge)
    query = callback_query(consent(em, params, username="bob"))
    assert query["state"] == params["state"]
    data = {
        "grant_type": "authorization_code",
        "code": query["code"],
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
        "client_id": em.client_id,
    }
    if client_kind == "secret-basic":
        resp = token_call(em, data, auth=(em.client_id, SECRET))
    elif client_kind == "secret-json":
        resp = requests.post(em.url + "/oauth/token", json={**data, "client_secret": SECRET}, timeout=5)
    else:
        resp = token_call(em, {**data, **client_auth(em, secret)})
    assert resp.status_code == 200, resp.text
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.json()
    assert set(body) == {"access_token", "refresh_token", "id_token", "scope", "expires_in", "token_type"}
    assert (body["scope"], body["expires_in"], body["token_type"]) == (SCOPE, 1200, "Bearer")
    claims = verify_id_token(em, body["id_token"])
    assert claims["nonce"] == params["nonce"] and claims["aud"] == em.client_id
    assert (claims["sub"], claims["name"], claims["email"]) == ("auth0|bob", "bob", "bob@example.com")
    assert claims["exp"] - claims["iat"] == 3600
    accounts = api(em, "/v3/brokerage/accounts", body["access_token"]).json()["Accounts"]
    assert [a["AccountID"] for a in accounts] == ["11111111", "22222222"]
    assert {a["Alias"] for a in accounts} == {"bob"}
    userinfo = api(em, "/userinfo", body["access_token"]).json()
    assert userinfo == {"sub": "auth0|bob", "name": "bob", "nickname": "bob", "email": "bob@example.com"}


def test_no_refresh_token_without_offline_access(public: Emulator) -> None:
    assert "refresh_token" not in sign_in(public, scope="openid MarketData")


def test_confidential_client_without_pkce(confidential: Emulator) -> None:
    code = callback_query(consent(confidential, authorize_params(confidential, None)))["code"]
    resp = token_call(
        confidential,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            **client_auth(confidential, SECRET),
        },
    )
    assert resp.status_code == 200, resp.text


def test_sign_in_page_echoes_parameters_escaped(public: Emulator) -> None:
    _, challenge = pkce()
    params = authorize_params(public, challenge, state='"><script>alert(1)</script>')
    page = requests.get(public.url + "/authorize", params=params, timeout=5)
    assert "<title>Sign in · TradeStation emulator</title>" in page.text
    assert "<script>" not in page.text
    form = parse_form(page.text)
    assert form.form_attrs == {"method": "post", "action": "/authorize"}
    assert {"username", "allow", "deny"} <= form.ids
    assert form.inputs == {**params, "username": "analyst"}


def test_empty_username_shows_the_form_again(public: Emulator) -> None:
    _, challenge = pkce()
    resp = consent(public, authorize_params(public, challenge), username="  ")
    assert resp.status_code == 200 and "Enter a username." in resp.text and "Location" not in resp.headers


def test_deny_redirects_with_access_denied(public: Emulator) -> None:
    _, challenge = pkce()
    params = authorize_params(public, challenge)
    resp = consent(public, params, decision="deny")
    location = resp.headers["Location"]
    assert "error_description=User%20did%20not%20authorize%20the%20request" in location
    assert callback_query(resp) == {
        "error": "access_denied",
        "state": params["state"],
        "error_description": "User did not authorize the request",
    }


def test_callback_with_query_gets_ampersand(public: Emulator) -> None:
    public.add_redirect_uri(CALLBACK + "/cb?x=1")
    _, challenge = pkce()
    resp = consent(public, authorize_params(public, challenge, redirect_uri=CALLBACK + "/cb?x=1"))
    assert resp.headers["Location"].startswith(CALLBACK + "/cb?x=1&code=")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"redirect_uri": CALLBACK + "/"}, f"Callback URL mismatch. {CALLBACK}/ is not in the list"),
        ({"redirect_uri": "http://127.0.0.1:3000"}, "Callback URL mismatch."),
        ({"client_id": "someone-else"}, "Unknown client: someone-else"),
        ({"response_type": "token"}, "Unsupported response type: token"),
        ({"code_challenge": ""}, "code_challenge must be 43"),
        ({"code_challenge_method": "plain"}, "code_challenge_method must be S256"),
        ({"no_pkce": "1"}, "Missing required parameter: code_challenge"),
    ],
    ids=[
        "trailing-slash",
        "other-host",
        "unknown-client",
        "implicit-flow",
        "empty-challenge",
        "plain-pkce",
        "public-without-pkce",
    ],
)
def test_authorize_refusals_show_a_page_and_never_redirect(
    public: Emulator, overrides: dict[str, str], message: str
) -> None:
    _, challenge = pkce()
    params = authorize_params(public, None if "no_pkce" in overrides else challenge, **overrides)
    params.pop("no_pkce", None)
    for resp in (
        requests.get(public.url + "/authorize", params=params, allow_redirects=False, timeout=5),
        requests.post(
            public.url + "/authorize",
            data={**params, "username": "a", "decision": "allow"},
            allow_redirects=False,
            timeout=5,
        ),
    ):
        assert resp.status_code == 400
        assert "Location" not in resp.headers
        assert message in resp.text.replace("&#x27;", "'")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_verifier": secrets.token_urlsafe(64)}, "invalid_grant"),
        ({"code_verifier": None}, "invalid_grant"),
        ({"redirect_uri": CALLBACK + "/"}, "invalid_grant"),
        ({"code": "not-a-code"}, "invalid_grant"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({"grant_type": None}, "invalid_request"),
    ],
    ids=["wrong-verifier", "missing-verifier", "other-redirect-uri", "unknown-code", "password-grant", "no-grant-type"],
)
def test_bad_code_exchanges(public: Emulator, change: dict[str, str | None], error: str) -> None:
    verifier, challenge = pkce()
    code = callback_query(consent(public, authorize_params(public, challenge)))["code"]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
        "client_id": public.client_id,
        **change,
    }
    resp = token_call(public, {k: v for k, v in data.items() if v is not None})
    assert (resp.status_code, resp.json()["error"]) == (400, error)
    assert resp.json()["error_description"]


def test_replayed_code_is_refused(public: Emulator) -> None:
    verifier, challenge = pkce()
    code = callback_query(consent(public, authorize_params(public, challenge)))["code"]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
        "client_id": public.client_id,
    }
    assert token_call(public, data).status_code == 200
    replay = token_call(public, data)
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")


@pytest.mark.parametrize(
    ("auth", "kind"),
    [
        ({"client_id": "secret-client", "client_secret": "wrong"}, "confidential"),
        ({"client_id": "secret-client"}, "confidential"),
        ({"client_id": "other", "client_secret": SECRET}, "confidential"),
        ({"client_id": "public-client", "client_secret": SECRET}, "public"),
    ],
    ids=["wrong-secret", "missing-secret", "unknown-client", "secret-for-public-client"],
)
def test_client_authentication_failures(
    public: Emulator, confidential: Emulator, auth: dict[str, str], kind: str
) -> None:
    em = public if kind == "public" else confidential
    resp = token_call(em, {"grant_type": "refresh_token", "refresh_token": "x", **auth})
    assert (resp.status_code, resp.json()["error"]) == (401, "invalid_client")
    revoke = requests.post(em.url + "/oauth/revoke", data={"token": "x", **auth}, timeout=5)
    assert (revoke.status_code, revoke.json()["error"]) == (401, "invalid_client")


# -- refresh, revocation, expiry ----------------------------------------------------------------------


def test_refresh_without_rotation_keeps_the_refresh_token(confidential: Emulator) -> None:
    first = sign_in(confidential, SECRET)
    for _ in range(2):
        resp = refresh(confidential, first["refresh_token"], SECRET)
        body = resp.json()
        assert resp.status_code == 200 and "refresh_token" not in body
        assert body["access_token"] != first["access_token"]
        claims = verify_id_token(confidential, body["id_token"])
        assert "nonce" not in claims and claims["sub"] == "auth0|analyst"
        assert api(confidential, "/v3/brokerage/accounts", body["access_token"]).status_code == 200


def test_refresh_with_rotation_retires_the_old_token(make_emulator: Callable[..., Emulator]) -> None:
    em = make_emulator(rotate_refresh_tokens=True)
    first = sign_in(em)
    second = refresh(em, first["refresh_token"]).json()
    assert second["refresh_token"] != first["refresh_token"]
    replay = refresh(em, first["refresh_token"])
    assert (replay.status_code, replay.json()) == (
        400,
        {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."},
    )
    assert refresh(em, second["refresh_token"]).status_code == 200


def test_revoke_then_refresh_fails(public: Emulator) -> None:
    tokens = sign_in(public)
    resp = requests.post(
        public.url + "/oauth/revoke", data={"client_id": public.client_id, "token": tokens["refresh_token"]}, timeout=5
    )
    assert (resp.status_code, resp.content) == (200, b"")
    assert refresh(public, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert api(public, "/v3/brokerage/accounts", tokens["access_token"]).status_code == 401
    unknown = requests.post(
        public.url + "/oauth/revoke", json={"client_id": public.client_id, "token": "nope"}, timeout=5
    )
    assert unknown.status_code == 200


def test_short_lifetime_expires(public: Emulator) -> None:
    public.access_token_lifetime = 0.5
    tokens = sign_in(public)
    assert tokens["expires_in"] == 1
    assert api(public, "/v3/brokerage/accounts", tokens["access_token"]).status_code == 200
    time.sleep(0.6)
    expired = api(public, "/v3/brokerage/accounts", tokens["access_token"])
    assert (expired.status_code, expired.json()) == (
        401,
        {"Error": "Unauthorized", "Message": "Access token is invalid or expired"},
    )
    assert api(public, "/userinfo", tokens["access_token"]).status_code == 401
    public.access_token_lifetime = 1200
    renewed = refresh(public, tokens["refresh_token"]).json()
    assert api(public, "/v3/brokerage/accounts", renewed["access_token"]).status_code == 200


def test_revoke_access_tokens_keeps_refresh_working(public: Emulator) -> None:
    tokens = sign_in(public)
    public.revoke_access_tokens()
    assert api(public, "/v3/brokerage/accounts", tokens["access_token"]).status_code == 401
    renewed = refresh(public, tokens["refresh_token"]).json()
    assert api(public, "/v3/brokerage/accounts", renewed["access_token"]).status_code == 200


def test_revoke_refresh_tokens(public: Emulator) -> None:
    tokens = sign_in(public)
    public.revoke_refresh_tokens()
    assert refresh(public, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert api(public, "/v3/brokerage/accounts", tokens["access_token"]).status_code == 200


def test_fail_next_token_request_fails_once(public: Emulator) -> None:
    tokens = sign_in(public)
    public.fail_next_token_request(error="temporarily_unavailable", status=503, description="busy")
    failed = refresh(public, tokens["refresh_token"])
    assert (failed.status_code, failed.json()) == (
        503,
        {"error": "temporarily_unavailable", "error_description": "busy"},
    )
    assert refresh(public, tokens["refresh_token"]).status_code == 200
    public.fail_next_token_request()
    assert refresh(public, tokens["refresh_token"]).status_code == 500
    assert public.grants[-3:] == [
        {"grant_type": "refresh_token", "ok": False, "error": "temporarily_unavailable"},
        {"grant_type": "refresh_token", "ok": True, "error": None},
        {"grant_type": "refresh_token", "ok": False, "error": "server_error"},
    ]


def test_a_failure_for_one_grant_lets_the_others_pass(public: Emulator) -> None:
    """Other clients' renewals go on while a test waits for its own sign-in to be refused."""
    tokens = sign_in(public)
    public.fail_next_token_request(error="temporarily_unavailable", status=429, grant_type="authorization_code")

    assert refresh(public, tokens["refresh_token"]).status_code == 200
    with pytest.raises(AssertionError):
        sign_in(public)
    assert [g["error"] for g in public.grants[-2:]] == [None, "temporarily_unavailable"]


# -- the API ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("base", "prefix"), [("/v3", ""), ("/sim/v3", "SIM")], ids=["live", "sim"])
def test_api_bases(public: Emulator, base: str, prefix: str) -> None:
    token = sign_in(public)["access_token"]
    accounts = api(public, base + "/brokerage/accounts", token).json()["Accounts"]
    assert [(a["AccountID"], a["AccountType"]) for a in accounts] == [
        (prefix + "11111111", "Margin"),
        (prefix + "22222222", "Cash"),
    ]
    public.market_clock = datetime(2026, 12, 2, 15, 0, tzinfo=timezone.utc)  # quotes move with the clock
    quotes = api(public, base + "/marketdata/quotes/AAPL,MSFT", token).json()["Quotes"]
    again = api(public, base + "/marketdata/quotes/MSFT", token).json()["Quotes"]
    assert [q["Symbol"] for q in quotes] == ["AAPL", "MSFT"]
    assert quotes[1] == again[0] and float(quotes[0]["Last"]) > 0
    missing = api(public, base + "/brokerage/nothing", token)
    assert (missing.status_code, missing.json()["Error"]) == (404, "NotFound")
    anonymous = api(public, base + "/brokerage/accounts", None)
    assert (anonymous.status_code, anonymous.json()) == (
        401,
        {"Error": "Unauthorized", "Message": "Access token is missing"},
    )
    assert api(public, base + "/brokerage/accounts", "made-up").status_code == 401


def test_redirect_does_not_carry_the_bearer_to_another_origin(
    public: Emulator, make_emulator: Callable[..., Emulator]
) -> None:
    other = make_emulator()
    token = sign_in(public)["access_token"]
    target = other.url + "/v3/echo"
    raw = api(public, "/v3/redirect", token, params={"to": target}, allow_redirects=False)
    assert (raw.status_code, raw.headers["Location"]) == (302, target)
    followed = api(public, "/v3/redirect", token, params={"to": target})
    assert followed.json() == {"authorization": False}
    assert other.requests_seen == [{"method": "GET", "path": "/v3/echo", "authorization": False, "cookie": False}]
    assert api(public, "/v3/echo", token).json() == {"authorization": True}
    bad = api(public, "/v3/redirect", token, params={"to": "/relative"}, allow_redirects=False)
    assert bad.status_code == 400


def test_records(public: Emulator) -> None:
    tokens = sign_in(public)
    renewed = refresh(public, tokens["refresh_token"]).json()
    refresh(public, "bogus")
    api(public, "/v3/brokerage/accounts", tokens["access_token"])
    api(public, "/sim/v3/brokerage/accounts", renewed["access_token"])
    api(public, "/v3/brokerage/accounts", None)
    assert public.grants == [
        {"grant_type": "authorization_code", "ok": True, "error": None},
        {"grant_type": "refresh_token", "ok": True, "error": None},
        {"grant_type": "refresh_token", "ok": False, "error": "invalid_grant"},
    ]
    calls = public.api_calls
    assert [(c["path"], c["status"]) for c in calls] == [
        ("/v3/brokerage/accounts", 200),
        ("/sim/v3/brokerage/accounts", 200),
        ("/v3/brokerage/accounts", 401),
    ]
    assert calls[0]["token_id"] == hashlib.sha256(tokens["access_token"].encode()).hexdigest()[:8]
    assert len({c["token_id"] for c in calls[:2]}) == 2 and calls[2]["token_id"] is None
    seen = public.requests_seen
    assert seen[-1] == {"method": "GET", "path": "/v3/brokerage/accounts", "authorization": False, "cookie": False}
    assert seen[-2]["authorization"] is True
    assert all(set(r) == {"method", "path", "authorization", "cookie"} for r in seen)
    issued = public.issued_secrets()
    for value in (
        tokens["access_token"],
        tokens["refresh_token"],
        tokens["id_token"],
        renewed["access_token"],
        renewed["id_token"],
    ):
        assert value in issued
    assert len(issued) == 7  # plus the code and the verifier
    assert "bogus" not in issued
    public.grants.clear()  # a copy: the emulator's record is untouched
    assert len(public.grants) == 3


def test_issued_secrets_include_client_secret(confidential: Emulator) -> None:
    assert SECRET in confidential.issued_secrets()


def test_logs_hold_no_secrets(make_emulator: Callable[..., Emulator], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    em = make_emulator(client_secret=SECRET, rotate_refresh_tokens=True)
    tokens = sign_in(em, SECRET)
    renewed = refresh(em, tokens["refresh_token"], SECRET).json()
    api(em, "/v3/brokerage/accounts", renewed["access_token"])
    api(em, "/v3/redirect", renewed["access_token"], params={"to": em.url + "/v3/echo"})
    token_call(
        em,
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": em.client_id,
            "client_secret": SECRET,
        },
    )
    requests.post(
        em.url + "/oauth/revoke", data={"token": renewed["refresh_token"], **client_auth(em, SECRET)}, timeout=5
    )
    requests.put(em.url + "/oauth/token", data={"code": tokens["access_token"]}, timeout=5)
    em.stop()  # joins the server thread, so every access log line is written
    emulator_lines = [r for r in caplog.records if r.name.startswith("ts_notebook.emulator")]
    assert any("POST /oauth/token 200" in r.getMessage() for r in emulator_lines)
    text = caplog.text
    leaked = [s[:6] for s in em.issued_secrets() if s in text]
    assert not leaked
    assert "?" not in "".join(r.getMessage() for r in emulator_lines)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/oauth/token", {"data": "{bad", "headers": {"Content-Type": "application/json"}}, 400),
        ("POST", "/oauth/token", {"json": ["a"]}, 400),
        ("POST", "/oauth/token", {"json": {"grant_type": 1}}, 400),
        (
            "POST",
            "/oauth/token",
            {"data": b"\xff\xfe", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
            400,
        ),
        (
            "POST",
            "/oauth/token",
            {"data": "grant_type=a&grant_type=b", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
            400,
        ),
        ("POST", "/oauth/token", {"data": "hello", "headers": {"Content-Type": "text/plain"}}, 400),
        (
            "POST",
            "/oauth/token",
            {"data": {"grant_type": "refresh_token"}, "headers": {"Authorization": "Basic !!!"}},
            401,
        ),
        ("PUT", "/oauth/token", {}, 405),
        ("POST", "/oauth/revoke", {"data": "{", "headers": {"Content-Type": "application/json"}}, 400),
        ("GET", "/authorize?client_id=a&client_id=b", {}, 400),
        ("GET", "/authorize?client_id=%ff", {}, 400),
        ("POST", "/authorize", {"data": "x", "headers": {"Content-Type": "text/plain"}}, 400),
        ("GET", "/userinfo", {}, 401),
        ("GET", "/nowhere", {}, 404),
        ("DELETE", "/v3/brokerage/accounts", {}, 401),
    ],
    ids=[
        "bad-json",
        "json-list",
        "json-number",
        "not-utf8",
        "repeated-param",
        "text-plain",
        "bad-basic",
        "put-token",
        "revoke-bad-json",
        "authorize-repeated",
        "authorize-not-utf8",
        "authorize-text",
        "userinfo-anonymous",
        "unknown-path",
        "api-delete",
    ],
)
def test_bad_input_gets_a_short_error(
    public: Emulator, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    resp = requests.request(method, public.url + path, timeout=5, allow_redirects=False, **kwargs)
    assert resp.status_code == status
    assert "Traceback" not in resp.text and len(resp.text) < 4000


# -- lifecycle and CLI -----------------------------------------------------------------------------


def test_defaults_and_stop_frees_the_port() -> None:
    assert DEFAULT_REDIRECT_URIS[0] == "http://localhost" and "http://localhost:31022" in DEFAULT_REDIRECT_URIS
    with Emulator() as em:
        url = em.url
        assert url.startswith("http://127.0.0.1:") and not url.endswith("/")
        assert requests.get(url + "/.well-known/jwks.json", timeout=5).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/.well-known/jwks.json", timeout=5)
    em.stop()  # a second stop is harmless
    port = int(url.rsplit(":", 1)[1])
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_cli_serves_until_terminated() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TS_CLIENT_SECRET": SECRET}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ts_notebook.emulator",
            "--port",
            str(port),
            "--client-id",
            "cli-client",
            "--redirect-uri",
            "http://127.0.0.1:9999/cb",
            "--token-lifetime",
            "5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert select.select([proc.stdout], [], [], 15)[0], "the CLI printed nothing"
        line = proc.stdout.readline().strip() if proc.stdout else ""
        url = f"http://127.0.0.1:{port}"
        assert line == f"TradeStation emulator on {url} (client_id=cli-client). To use it from a terminal:"
        assert requests.get(url + "/.well-known/openid-configuration", timeout=5).json()["issuer"] == url + "/"
        page = requests.get(
            url + "/authorize",
            timeout=5,
            params={"response_type": "code", "client_id": "cli-client", "redirect_uri": "http://127.0.0.1:9999/cb"},
        )
        assert page.status_code == 200
        no_secret = requests.post(
            url + "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": "cli-client"},
            timeout=5,
        )
        assert no_secret.status_code == 401
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert SECRET not in out + err + line

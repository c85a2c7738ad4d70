"""The emulator's fault injection, driven over real loopback HTTP like a misbehaving provider."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
import requests

from ts_notebook.emulator import Emulator

from .test_app import (
    CALLBACK,
    api,
    authorize_params,
    callback_query,
    client_auth,
    consent,
    pkce,
    refresh,
    sign_in,
    token_call,
    verify_id_token,
)

ACCOUNTS = "/v3/brokerage/accounts"
DISCOVERY = "/.well-known/openid-configuration"
JWKS = "/.well-known/jwks.json"


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Poll ``condition`` until it holds; fail the test if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the emulator"
        time.sleep(0.01)


def token_posts(em: Emulator) -> int:
    """How many POST /oauth/token requests have reached the emulator so far."""
    return sum(r["method"] == "POST" and r["path"] == "/oauth/token" for r in em.requests_seen)


# -- token_delay -----------------------------------------------------------------------------


def test_delayed_token_calls_do_not_block_other_requests(emulator: Emulator, client_secret: str) -> None:
    tokens = sign_in(emulator, client_secret)
    emulator.token_delay = 1.0
    assert emulator.token_delay == 1.0
    replies: list[tuple[int, float]] = []

    def slow_refresh() -> None:
        began = time.monotonic()
        status = refresh(emulator, tokens["refresh_token"], client_secret).status_code
        replies.append((status, time.monotonic() - began))

    threads = [threading.Thread(target=slow_refresh) for _ in range(20)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    wait_for(lambda: token_posts(emulator) == 21)  # the sign-in's call plus the 20 waiting
    # Every other endpoint answers while all 20 token calls are still waiting.
    discovery = requests.get(emulator.url + DISCOVERY, timeout=5)
    jwks = requests.get(emulator.url + JWKS, timeout=5)
    accounts = api(emulator, ACCOUNTS, tokens["access_token"])
    assert (discovery.status_code, jwks.status_code, accounts.status_code) == (200, 200, 200)
    assert replies == [] and len(emulator.grants) == 1
    for thread in threads:
        thread.join(10)
    elapsed = time.monotonic() - began
    assert [status for status, _ in replies] == [200] * 20
    assert min(took for _, took in replies) >= 0.9
    assert elapsed < 5 * emulator.token_delay  # about one delay, not twenty
    assert [g["ok"] for g in emulator.grants] == [True] * 21


def test_client_giving_up_during_the_delay(
    emulator: Emulator, client_secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = sign_in(emulator, client_secret)
    emulator.token_delay = 0.5
    with pytest.raises(requests.Timeout):
        requests.post(
            emulator.url + "/oauth/token",
            timeout=0.1,
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                **client_auth(emulator, client_secret),
            },
        )
    wait_for(lambda: len(emulator.grants) == 2)  # the provider still did the work
    emulator.token_delay = 0
    assert emulator.token_delay == 0.0
    assert refresh(emulator, tokens["refresh_token"], client_secret).status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- scripted failures and resets --------------------------------------------------------------


def test_fail_next_token_request_times(emulator: Emulator, client_secret: str) -> None:
    tokens = sign_in(emulator, client_secret)
    emulator.fail_next_token_request(error="temporarily_unavailable", status=503, description="busy", times=3)
    failures = [refresh(emulator, tokens["refresh_token"], client_secret) for _ in range(3)]
    assert {(r.status_code, r.json()["error"], r.json()["error_description"]) for r in failures} == {
        (503, "temporarily_unavailable", "busy")
    }
    assert refresh(emulator, tokens["refresh_token"], client_secret).status_code == 200
    assert [g["error"] for g in emulator.grants] == [None, *["temporarily_unavailable"] * 3, None]


def test_reset_next_token_request_sends_no_reply(emulator: Emulator, client_secret: str) -> None:
    tokens = sign_in(emulator, client_secret)
    emulator.reset_next_token_request(times=2)
    for _ in range(2):
        with pytest.raises(requests.ConnectionError) as caught:
            refresh(emulator, tokens["refresh_token"], client_secret)
        assert "Connection aborted" in str(caught.value)
    assert refresh(emulator, tokens["refresh_token"], client_secret).status_code == 200
    assert emulator.grants[1:] == [
        {"grant_type": "refresh_token", "ok": False, "error": "connection_reset"},
        {"grant_type": "refresh_token", "ok": False, "error": "connection_reset"},
        {"grant_type": "refresh_token", "ok": True, "error": None},
    ]


def test_reset_is_a_tcp_reset(emulator: Emulator) -> None:
    emulator.reset_next_token_request()
    body = b"grant_type=refresh_token&refresh_token=x"
    request = (
        b"POST /oauth/token HTTP/1.1\r\nHost: emulator\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    port = int(emulator.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        with pytest.raises(ConnectionResetError):
            while sock.recv(4096):
                pass  # a plain close would end in b"" instead


def test_scripted_calls_queue_in_order_and_leave_the_code_unused(emulator: Emulator, client_secret: str) -> None:
    verifier, challenge = pkce()
    params = authorize_params(emulator, challenge)
    data = {
        "grant_type": "authorization_code",
        "code": callback_query(consent(emulator, params))["code"],
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
        **client_auth(emulator, client_secret),
    }
    emulator.reset_next_token_request()
    emulator.fail_next_token_request(status=502, times=2)
    with pytest.raises(requests.ConnectionError):
        token_call(emulator, data)
    assert [token_call(emulator, data).status_code for _ in range(2)] == [502, 502]
    redeemed = token_call(emulator, data)  # the code survived the failed attempts
    assert redeemed.status_code == 200, redeemed.text
    assert verify_id_token(emulator, redeemed.json()["id_token"])["nonce"] == params["nonce"]
    assert [g["error"] for g in emulator.grants] == ["connection_reset", "server_error", "server_error", None]


def test_malformed_body_does_not_use_up_a_scripted_failure(emulator: Emulator, client_secret: str) -> None:
    tokens = sign_in(emulator, client_secret)
    emulator.fail_next_token_request(status=503)
    bad = requests.post(
        emulator.url + "/oauth/token", data="{", timeout=5, headers={"Content-Type": "application/json"}
    )
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_request")
    assert refresh(emulator, tokens["refresh_token"], client_secret).status_code == 503


@pytest.mark.parametrize("times", [0, -1, 1.5, True], ids=["zero", "negative", "fraction", "bool"])
def test_times_must_be_a_positive_integer(emulator: Emulator, times: Any) -> None:
    with pytest.raises(ValueError, match="times"):
        emulator.fail_next_token_request(times=times)
    with pytest.raises(ValueError, match="times"):
        emulator.reset_next_token_request(times=times)


# -- id_tokens: clock and kid -----------------------------------------------------------------------


@pytest.mark.parametrize("skew", [600.0, -7200.0], ids=["provider-ahead", "provider-behind"])
def test_clock_skew_shifts_iat_and_exp(emulator: Emulator, client_secret: str, skew: float) -> None:
    emulator.clock_skew = skew
    assert emulator.clock_skew == skew
    tokens = sign_in(emulator, client_secret)
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert abs(claims["iat"] - (time.time() + skew)) < 5
    assert claims["exp"] - claims["iat"] == 3600
    error = jwt.ImmatureSignatureError if skew > 0 else jwt.ExpiredSignatureError
    with pytest.raises(error):
        verify_id_token(emulator, tokens["id_token"])
    assert api(emulator, ACCOUNTS, tokens["access_token"]).status_code == 200  # real clock there
    emulator.clock_skew = 0
    verify_id_token(emulator, sign_in(emulator, client_secret)["id_token"])


def test_sign_without_kid(emulator: Emulator, client_secret: str) -> None:
    emulator.sign_without_kid = True
    assert emulator.sign_without_kid is True
    id_token = sign_in(emulator, client_secret)["id_token"]
    header = jwt.get_unverified_header(id_token)
    assert "kid" not in header and header["alg"] == "RS256"
    (key,) = jwt.PyJWKSet.from_dict(requests.get(emulator.url + JWKS, timeout=5).json()).keys
    claims = jwt.decode(id_token, key, algorithms=["RS256"], audience=emulator.client_id)
    assert claims["sub"] == "auth0|analyst"  # signed with the current key all the same
    emulator.sign_without_kid = False
    assert jwt.get_unverified_header(sign_in(emulator, client_secret)["id_token"])["kid"] == key.key_id


# -- documents: JWKS and discovery -------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [[], {}, {"keys": "x"}, {"keys": []}, {"keys": [{"kty": "RSA"}]}, "keys", 0],
    ids=["empty-list", "empty-object", "keys-string", "no-keys", "broken-key", "string", "number"],
)
def test_jwks_override(emulator: Emulator, document: Any) -> None:
    real = requests.get(emulator.url + JWKS, timeout=5).json()
    emulator.jwks_override = document
    assert emulator.jwks_override == document
    served = requests.get(emulator.url + JWKS, timeout=5)
    assert (served.status_code, served.json()) == (200, document)
    emulator.jwks_override = None
    assert requests.get(emulator.url + JWKS, timeout=5).json() == real


def test_overrides_are_private_copies(emulator: Emulator) -> None:
    document: dict[str, Any] = {"keys": []}
    emulator.jwks_override = document
    document["keys"].append("changed later")
    emulator.jwks_override["keys"].append("changed through the getter")
    assert requests.get(emulator.url + JWKS, timeout=5).json() == {"keys": []}
    emulator.discovery_overrides = {"issuer": "https://evil.example/"}
    with pytest.raises(TypeError):
        emulator.discovery_overrides["issuer"] = "x"  # type: ignore[index]
    assert dict(emulator.discovery_overrides) == {"issuer": "https://evil.example/"}


@pytest.mark.parametrize(
    "overrides",
    [
        {"issuer": "https://evil.example/"},
        {"token_endpoint": "http://127.0.0.2/x"},
        {"jwks_uri": None, "code_challenge_methods_supported": ["plain"], "extra": {"a": 1}},
    ],
    ids=["issuer", "token-endpoint", "odd-values"],
)
def test_discovery_overrides(emulator: Emulator, client_secret: str, overrides: dict[str, Any]) -> None:
    real = requests.get(emulator.url + DISCOVERY, timeout=5).json()
    emulator.discovery_overrides = overrides
    assert dict(emulator.discovery_overrides) == overrides
    served = requests.get(emulator.url + DISCOVERY, timeout=5)
    assert (served.status_code, served.json()) == (200, {**real, **overrides})
    # Only the document lies: tokens still name the real issuer.
    id_token = sign_in(emulator, client_secret)["id_token"]
    assert verify_id_token(emulator, id_token)["iss"] == emulator.url + "/"
    emulator.discovery_overrides = {}
    assert requests.get(emulator.url + DISCOVERY, timeout=5).json() == real


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("jwks_override", object()),
        ("expires_in_override", {1, 2}),
        ("discovery_overrides", ["issuer"]),
        ("discovery_overrides", {1: "x"}),
        ("clock_skew", float("nan")),
        ("token_delay", -1),
        ("token_delay", float("nan")),
        ("token_delay", float("inf")),
    ],
    ids=[
        "jwks-not-json",
        "expires-in-not-json",
        "discovery-not-mapping",
        "discovery-int-key",
        "skew-nan",
        "delay-negative",
        "delay-nan",
        "delay-infinite",
    ],
)
def test_bad_settings_are_refused(emulator: Emulator, setting: str, value: Any) -> None:
    before = getattr(emulator, setting)
    with pytest.raises((TypeError, ValueError)):
        setattr(emulator, setting, value)
    assert getattr(emulator, setting) == before


# -- expires_in ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1e308, -5, "soon", 0, [60]], ids=["huge", "negative", "string", "zero", "list"])
def test_expires_in_override(emulator: Emulator, client_secret: str, value: Any) -> None:
    emulator.expires_in_override = value
    assert emulator.expires_in_override == value
    tokens = sign_in(emulator, client_secret)
    renewed = refresh(emulator, tokens["refresh_token"], client_secret).json()
    assert tokens["expires_in"] == renewed["expires_in"] == value
    emulator.expires_in_override = None
    assert refresh(emulator, tokens["refresh_token"], client_secret).json()["expires_in"] == 1200


def test_expires_in_override_leaves_the_real_lifetime(emulator: Emulator, client_secret: str) -> None:
    emulator.access_token_lifetime = 0.5
    emulator.expires_in_override = 86400
    tokens = sign_in(emulator, client_secret)
    assert tokens["expires_in"] == 86400
    assert api(emulator, ACCOUNTS, tokens["access_token"]).status_code == 200
    time.sleep(0.6)
    assert api(emulator, ACCOUNTS, tokens["access_token"]).status_code == 401


# -- provider down and back -----------------------------------------------------------------------------


def test_stop_then_start_keeps_everything(emulator: Emulator, client_secret: str) -> None:
    url = emulator.url
    port = int(url.rsplit(":", 1)[1])
    tokens = sign_in(emulator, client_secret)
    emulator.jwks_override = {"keys": []}
    session = requests.Session()  # a kept-alive connection across the outage
    assert session.get(url + DISCOVERY, timeout=5).status_code == 200
    for _ in range(2):
        emulator.stop()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        with pytest.raises(requests.ConnectionError):
            refresh(emulator, tokens["refresh_token"], client_secret)
        emulator.start()
        assert emulator.url == url
        assert session.get(url + DISCOVERY, timeout=5).json()["issuer"] == url + "/"
        assert api(emulator, ACCOUNTS, tokens["access_token"]).status_code == 200
        assert refresh(emulator, tokens["refresh_token"], client_secret).status_code == 200
    assert requests.get(url + JWKS, timeout=5).json() == {"keys": []}
    assert [g["ok"] for g in emulator.grants] == [True, True, True]
    with pytest.raises(RuntimeError, match="already running"):
        emulator.start()


def test_stop_while_token_calls_wait(emulator: Emulator, client_secret: str) -> None:
    tokens = sign_in(emulator, client_secret)
    emulator.token_delay = 30
    errors: list[BaseException] = []

    def waiting_refresh() -> None:
        try:
            refresh(emulator, tokens["refresh_token"], client_secret)
        except requests.RequestException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=waiting_refresh) for _ in range(3)]
    for thread in threads:
        thread.start()
    wait_for(lambda: token_posts(emulator) == 4)
    emulator.stop()  # the provider dies mid-request
    for thread in threads:
        thread.join(10)
    assert len(errors) == 3 and all(isinstance(e, requests.ConnectionError) for e in errors)
    emulator.token_delay = 0
    emulator.start()
    assert refresh(emulator, tokens["refresh_token"], client_secret).status_code == 200


# -- settings changed while serving, and logs ----------------------------------------------------------


def test_settings_change_safely_while_requests_run(emulator: Emulator) -> None:
    overrides = {"issuer": "https://evil.example/", "token_endpoint": "http://127.0.0.2/x"}
    seen: list[Any] = []
    done = threading.Event()

    def poll() -> None:
        with requests.Session() as session:
            while not done.is_set():
                reply = session.get(emulator.url + DISCOVERY, timeout=5)
                doc = reply.json()
                seen.append((reply.status_code, doc["issuer"], doc["token_endpoint"]))

    pollers = [threading.Thread(target=poll) for _ in range(4)]
    for thread in pollers:
        thread.start()
    try:
        for i in range(300):
            emulator.discovery_overrides = overrides if i % 2 else {}
            emulator.jwks_override = [i] if i % 3 else None
    finally:
        done.set()
        for thread in pollers:
            thread.join(10)
    real = (200, emulator.url + "/", emulator.url + "/oauth/token")
    assert seen and set(seen) <= {real, (200, overrides["issuer"], overrides["token_endpoint"])}


def test_fault_logs_hold_no_secrets(emulator: Emulator, client_secret: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = sign_in(emulator, client_secret)
    emulator.reset_next_token_request()
    emulator.fail_next_token_request()
    with pytest.raises(requests.ConnectionError):
        refresh(emulator, tokens["refresh_token"], client_secret)
    assert refresh(emulator, tokens["refresh_token"], client_secret).status_code == 500
    emulator.token_delay = 0.1
    emulator.expires_in_override = "soon"
    emulator.sign_without_kid = True
    assert refresh(emulator, tokens["refresh_token"], client_secret).status_code == 200
    emulator.stop()  # joins the server thread, so every access log line is written
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("ts_notebook.emulator")]
    assert "POST /oauth/token connection reset" in lines and "POST /oauth/token 500" in lines
    assert not [s[:6] for s in emulator.issued_secrets() if s in caplog.text]
    assert "?" not in "".join(lines)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- cut_symbols -----------------------------------------------------------------------------


def test_cut_symbols_replies_break_off_halfway_and_others_are_whole(emulator: Emulator, client_secret: str) -> None:
    token = sign_in(emulator, client_secret)["access_token"]
    emulator.cut_symbols = {"AAPL"}

    whole = api(emulator, "/v3/marketdata/barcharts/MSFT", token, params={"barsback": 50})
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        api(emulator, "/v3/marketdata/barcharts/AAPL", token, params={"barsback": 50})

    assert len(whole.json()["Bars"]) == 50
    assert [c["status"] for c in emulator.api_calls if c["path"].endswith("/AAPL")] == [200]  # headers sent

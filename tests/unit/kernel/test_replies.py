"""What a reply from the API means: its wait, its rate-limit figures, its missing scope."""

from __future__ import annotations

from email.utils import formatdate

import pytest
import requests

from ts_notebook.kernel.replies import api_error, missing_scope, rate_limit, retry_wait

NOW = 1_800_000_000.0


def reply(status: int = 429, body: bytes = b"", **headers: str) -> requests.Response:
    resp = requests.Response()
    resp.status_code, resp._content = status, body
    resp.headers.update({k.replace("_", "-"): v for k, v in headers.items()})
    resp.request = requests.Request("GET", "https://api.example/v3/marketdata/quotes/MSFT?x=1").prepare()
    return resp


@pytest.mark.parametrize(
    "headers, wait",
    [
        ({"Retry_After": "7"}, 7.0),
        ({"Retry_After": formatdate(NOW + 12, usegmt=True)}, 12.0),
        ({"X_RateLimit_Reset": "30"}, 30.0),  # seconds from now
        ({"X_RateLimit_Reset": str(int(NOW + 45))}, 45.0),  # an epoch time
        ({"Retry_After": "soon"}, None),
        ({}, None),
    ],
)
def test_the_wait_comes_from_retry_after_or_the_reset_header(headers, wait):
    assert retry_wait(reply(**headers), now=NOW) == (pytest.approx(wait, abs=1) if wait is not None else None)


def test_rate_limit_figures_are_read_when_present():
    assert rate_limit(reply(X_RateLimit_Limit="30", X_RateLimit_Resource="quotes").headers) == {
        "limit": "30",
        "resource": "quotes",
    }


def test_the_missing_scope_is_named_only_when_not_granted():
    assert missing_scope("marketdata/quotes/MSFT", ("openid",)) == "MarketData"
    assert missing_scope("marketdata/quotes/MSFT", ("MarketData",)) is None
    assert missing_scope("brokerage/accounts", ()) == "ReadAccount"


def test_an_error_reply_keeps_no_query_and_survives_a_body_that_is_not_json():
    err = api_error(reply(500, b"<html>oops</html>"), attempts=4)
    assert err.endpoint == "GET marketdata/quotes/MSFT" and "x=1" not in str(err)
    assert "tried 4 times" in str(err) and err.message == ""


def test_a_retry_after_date_in_minus_zero_form_is_utc():
    assert retry_wait(reply(Retry_After=formatdate(NOW + 20, usegmt=False).replace("+0000", "-0000")), now=NOW) == (
        pytest.approx(20, abs=1)
    )


def test_a_body_nested_past_any_limit_is_still_one_api_error():
    err = api_error(reply(500, b"[" * 100_000 + b"]" * 100_000))
    assert err.status == 500 and err.message == ""


def test_an_endless_reset_is_not_printed_as_inf():
    assert "inf" not in str(api_error(reply(429, X_RateLimit_Reset="1e400")))

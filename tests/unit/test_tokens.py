"""TokenSet: expiry math, carried-over fields and a repr without secrets."""

from __future__ import annotations

import time

import pytest

from ts_notebook.errors import OAuthError
from ts_notebook.keeper import fresh, renew_in, retry_in
from ts_notebook.tokens import MAX_LIFETIME, TokenSet


def test_a_refresh_reply_without_a_refresh_token_keeps_the_old_one():
    first = TokenSet.from_response(
        {"access_token": "a1", "refresh_token": "r1", "expires_in": 1200, "scope": "openid ReadAccount"},
        claims={"name": "Ann", "nonce": "n"},
        now=0,
    )
    second = TokenSet.from_response({"access_token": "a2", "expires_in": 1200}, previous=first, now=100)
    rotated = TokenSet.from_response({"access_token": "a3", "refresh_token": "r2"}, previous=second, now=200)

    assert (second.refresh_token, rotated.refresh_token) == ("r1", "r2")
    assert second.scopes == ("openid", "ReadAccount") and second.user == {"name": "Ann"}
    assert second.expires_at == 1300


@pytest.mark.parametrize(
    ("lifetime", "now", "expired"),
    [
        (1200, 1169, False),
        (1200, 1171, True),
        (4, 2.9, False),
        (4, 3.1, True),
    ],
    ids=["long-fresh", "long-within-skew", "short-fresh", "short-within-skew"],
)
def test_expiry_counts_a_skew_scaled_to_the_lifetime(lifetime, now, expired):
    t = TokenSet.from_response({"access_token": "a", "expires_in": lifetime}, now=0)
    assert fresh(t.expires_at, t.lifetime, now=now) is not expired


@pytest.mark.parametrize("expires_in", [0, -5, "nan", "inf", "soon"])
def test_an_absurd_lifetime_falls_back_to_twenty_minutes(expires_in):
    assert TokenSet.from_response({"access_token": "a", "expires_in": expires_in}, now=0).lifetime == 1200


def test_repr_shows_no_secret():
    t = TokenSet.from_response({"access_token": "sekrit-a", "refresh_token": "sekrit-r", "id_token": "sekrit-i"})
    assert "sekrit" not in repr(t) and "sekrit" not in str(t)


def test_a_reply_without_an_access_token_is_an_oauth_error():
    with pytest.raises(OAuthError, match="no access_token"):
        TokenSet.from_response({"error": "nope"})


@pytest.mark.parametrize("expires_in", [1e308, 10**12, 86401], ids=["1e308", "huge-int", "a-day-and-a-second"])
def test_a_lifetime_longer_than_a_day_is_cut_to_a_day(expires_in):
    t = TokenSet.from_response({"access_token": "a", "expires_in": expires_in}, now=0)
    assert t.lifetime == MAX_LIFETIME == 86400 and t.expires_at == 86400
    assert 0 < renew_in(t) < 86400


def test_tokens_that_are_not_text_are_no_tokens():
    t = TokenSet.from_response({"access_token": "a", "refresh_token": 5, "id_token": ["x"]}, now=0)
    assert t.refresh_token is None and t.id_token is None


@pytest.mark.parametrize(
    ("left", "expected"),
    [(100, 15.0), (10, 5.0), (0.4, 15.0), (-50, 15.0)],
    ids=["long-left", "short-left", "about-to-expire", "expired"],
)
def test_a_failed_renewal_is_retried_within_the_tokens_life_then_every_retry_after(left, expected):
    t = TokenSet.from_response({"access_token": "a", "expires_in": 1200}, now=0)
    t.expires_at = time.time() + left
    assert retry_in(t) == pytest.approx(expected, abs=0.05)

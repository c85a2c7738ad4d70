"""TokenSet: expiry math, carried-over fields and a repr without secrets."""

from __future__ import annotations

import pytest

from ts_notebook.errors import OAuthError
from ts_notebook.tokens import TokenSet, is_fresh


def test_a_refresh_reply_without_a_refresh_token_keeps_the_old_one():
    first = TokenSet.from_response({"access_token": "a1", "refresh_token": "r1", "expires_in": 1200,
                                    "scope": "openid ReadAccount"}, claims={"name": "Ann", "nonce": "n"}, now=0)
    second = TokenSet.from_response({"access_token": "a2", "expires_in": 1200}, previous=first, now=100)
    rotated = TokenSet.from_response({"access_token": "a3", "refresh_token": "r2"}, previous=second, now=200)

    assert (second.refresh_token, rotated.refresh_token) == ("r1", "r2")
    assert second.scopes == ("openid", "ReadAccount") and second.user == {"name": "Ann"}
    assert second.expires_at == 1300


@pytest.mark.parametrize(("lifetime", "now", "expired"), [
    (1200, 1169, False), (1200, 1171, True), (4, 2.9, False), (4, 3.1, True),
], ids=["long-fresh", "long-within-skew", "short-fresh", "short-within-skew"])
def test_expiry_counts_a_skew_scaled_to_the_lifetime(lifetime, now, expired):
    t = TokenSet.from_response({"access_token": "a", "expires_in": lifetime}, now=0)
    assert is_fresh(t.expires_at, t.lifetime, now=now) is not expired


@pytest.mark.parametrize("expires_in", [0, -5, "nan", "inf", "soon"])
def test_an_absurd_lifetime_falls_back_to_twenty_minutes(expires_in):
    assert TokenSet.from_response({"access_token": "a", "expires_in": expires_in}, now=0).lifetime == 1200


def test_repr_shows_no_secret():
    t = TokenSet.from_response({"access_token": "sekrit-a", "refresh_token": "sekrit-r", "id_token": "sekrit-i"})
    assert "sekrit" not in repr(t) and "sekrit" not in str(t)


def test_a_reply_without_an_access_token_is_an_oauth_error():
    with pytest.raises(OAuthError, match="no access_token"):
        TokenSet.from_response({"error": "nope"})

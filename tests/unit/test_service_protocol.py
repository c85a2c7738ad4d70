"""The hub service's protocol on its own: the hand-over as a typed value, read and refused."""

from __future__ import annotations

import pytest

from ts_notebook.pending import PendingLogin
from ts_notebook.service_protocol import MAX_FIELD, BadHandover, Handover, read_service_state, service_state
from ts_notebook.tokens import TokenSet


def test_a_claimed_login_is_handed_over_and_read_back_as_the_service_exchanges_it():
    pending = PendingLogin(
        state="st",
        verifier="the-verifier",
        nonce="no",
        redirect_uri="https://hub/cb",
        authorize_url="https://x",
        scopes=("openid",),
    )
    back = Handover.from_json(Handover.of(pending, "the-code").to_json())
    assert back == Handover("the-code", "the-verifier", "no", "https://hub/cb", ("openid",))
    exchanged = back.pending()
    assert (exchanged.verifier, exchanged.nonce, exchanged.redirect_uri, exchanged.scopes) == (
        "the-verifier",
        "no",
        "https://hub/cb",
        ("openid",),
    )
    assert "the-verifier" not in repr(back) and "the-code" not in repr(back)


GOOD = {"code": "c", "code_verifier": "v", "nonce": "n", "redirect_uri": "u", "scopes": ["openid"]}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"code": ""}, "code must be"),
        ({"nonce": 5}, "nonce must be"),
        ({"code_verifier": "v" * (MAX_FIELD + 1)}, "code_verifier must be"),
        ({"redirect_uri": "u\n"}, "redirect_uri must be"),
        ({"scopes": "openid"}, "scopes must be"),
        ({"scopes": ["open id"]}, "scopes must be"),
    ],
)
def test_a_hand_over_the_service_cannot_use_says_which_field(change, says):
    with pytest.raises(BadHandover, match=says):
        Handover.from_json({**GOOD, **change})


def test_the_state_a_server_reads_never_carries_a_refresh_token():
    tokens = TokenSet("at", expires_at=1100.0, lifetime=1200.0, refresh_token="rt", user={"sub": "a"})
    sent = service_state(3, tokens, None, now=1000.0)
    assert "refresh_token" not in sent and sent["expires_in"] == 100.0
    version, back, error = read_service_state({**sent, "refresh_token": "planted"}, now=5000.0)
    assert (version, back.access_token, back.expires_at, back.refresh_token, error) == (3, "at", 5100.0, None, None)

"""What revoking a refresh token ends, as real providers differ (``Emulator.revocation``): that
token alone, every refresh token of the user and key (TradeStation), or the whole grant with
the user's codes not yet exchanged (oidc-provider, Auth0's "revocation deletes grant")."""

from __future__ import annotations

import pytest

from ts_notebook.emulator import Emulator
from ts_notebook.errors import OAuthError
from ts_notebook.oauth import OAuthClient

from ...parts.signin import REDIRECT, approve
from ..test_oauth import client  # noqa: F401 - the client fixture


def signed_in(oauth: OAuthClient, username: str = "analyst"):
    pending = oauth.begin_login(REDIRECT)
    return oauth.exchange(pending, approve(pending, username=username)["code"])


def alive(oauth: OAuthClient, tokens) -> bool:
    try:
        oauth.refresh(tokens)
    except OAuthError:
        return False
    return True


@pytest.mark.parametrize(
    ("kind", "sibling", "pending_code"),
    [("token", True, True), ("user", False, True), ("grant", False, False)],
    ids=["token", "user", "grant"],
)
def test_revoking_a_refresh_token_ends_what_the_provider_ends(client, emulator, kind, sibling, pending_code):  # noqa: F811
    emulator.revocation = kind
    first, second, other = signed_in(client), signed_in(client), signed_in(client, "trader")
    waiting = client.begin_login(REDIRECT)
    code = approve(waiting)["code"]  # a sign-in of the same user, its code not yet exchanged

    client.revoke(first.refresh_token)

    assert not alive(client, first)
    assert alive(client, second) is sibling
    assert alive(client, other)  # another user's sign-in is never touched
    if pending_code:
        assert client.exchange(waiting, code).refresh_token
    else:
        with pytest.raises(OAuthError, match="invalid_grant"):
            client.exchange(waiting, code)


def test_an_unknown_revocation_kind_is_refused(emulator: Emulator):
    with pytest.raises(ValueError, match="revocation must be one of token, user, grant"):
        emulator.revocation = "everything"

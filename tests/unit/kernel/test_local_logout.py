"""What %ts_logout says of an in-process sign-in (no Jupyter server), against the emulator:
signed out and revoked; forgotten here though revoking failed, and why; or nothing to sign out."""

from __future__ import annotations

import pytest

from ts_notebook.errors import OAuthError

from ...parts.signin import sign_in_at
from .test_local_security import login, make_source  # noqa: F401 - the fixtures


def test_signing_out_revokes_the_refresh_token_and_says_so(login, make_source):  # noqa: F811
    source = make_source()
    sign_in_at(login(source).start_url, "analyst")
    tokens = source.tokens

    done = source.logout()

    assert str(done) == "Signed out of TradeStation (the sign-in was revoked)."
    assert not source.snapshot.signed_in
    with pytest.raises(OAuthError, match="invalid_grant"):
        source.client.refresh(tokens)  # revoked at the provider, not just forgotten here


def test_a_failed_revocation_is_said_with_its_reason(login, make_source, emulator):  # noqa: F811
    source = make_source()
    sign_in_at(login(source).start_url, "analyst")

    emulator.stop()  # the sign-in service cannot be reached to revoke
    done = source.logout()

    assert not source.snapshot.signed_in
    assert str(done) == (
        "Signed out of TradeStation: the sign-in is forgotten here, but revoking it at TradeStation failed "
        "(network_error), so it may stay valid there."
    )


def test_signing_out_when_nobody_is_signed_in_says_there_is_nothing_to_do(make_source):  # noqa: F811
    assert str(make_source().logout()) == "Not signed in to TradeStation; nothing to sign out."

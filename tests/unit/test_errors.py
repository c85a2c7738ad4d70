"""Every error says what to do next, and never carries a secret it was not given."""

from __future__ import annotations

import pytest

from ts_notebook.errors import HINTS, OTHER_HINT, NotSignedIn, OAuthError


def test_not_signed_in_says_to_run_ts_login_once():
    assert str(NotSignedIn()) == "Not signed in to TradeStation. Run %ts_login (or ts.login()) to sign in."
    assert str(NotSignedIn("You signed out.")) == "You signed out. Run %ts_login (or ts.login()) to sign in."
    assert str(NotSignedIn("Gone. Run %ts_login again")) == "Gone. Run %ts_login again"


@pytest.mark.parametrize("code", sorted(HINTS))
def test_each_provider_error_ends_with_its_hint(code):
    assert str(OAuthError(code, "why")) == f"TradeStation sign-in failed: {code} (why). {HINTS[code]}"


def test_an_unforeseen_error_gets_the_general_hint_and_a_given_hint_wins():
    assert str(OAuthError("temporarily_unavailable")).endswith(OTHER_HINT)
    assert str(OAuthError("invalid_grant", "", "Do this")) == "TradeStation sign-in failed: invalid_grant. Do this"


@pytest.mark.parametrize(
    "code, permanent",
    [("invalid_grant", True), ("no_refresh_token", True), ("server_error", False), ("network_error", False)],
)
def test_only_a_dead_grant_is_permanent(code, permanent):
    assert OAuthError(code).permanent is permanent

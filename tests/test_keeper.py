"""The token-lifetime policy on its own, driven through every path with a made-up clock."""

from __future__ import annotations

import pytest

from ts_notebook.keeper import MIN_DELAY, ArmTimer, Forget, Keep, Keeper, Notify, Refresh, Revoke
from ts_notebook.tokens import RETRY_AFTER, TokenSet

T0 = 1_000_000.0


def tokens(n: int, lifetime: float = 1200, now: float = T0, refresh: str | None = "r1") -> TokenSet:
    return TokenSet.from_response({"access_token": f"a{n}", "expires_in": lifetime, "refresh_token": refresh}, now=now)


@pytest.fixture
def keeper() -> Keeper:
    k = Keeper()
    k.signed_in(tokens(1), T0)
    return k


def test_a_sign_in_is_announced_and_renewed_before_it_expires():
    k = Keeper()
    first = tokens(1)
    assert k.signed_in(first, T0) == [Notify(), ArmTimer(1200 - 120), Keep(first)]  # two minutes early


@pytest.mark.parametrize(
    ("lifetime", "delay"),
    [(3, 2.0), (1, MIN_DELAY), (0.2, MIN_DELAY)],
    ids=["short", "one-second", "shorter-than-the-floor"],
)
def test_timers_never_fire_closer_than_the_floor(lifetime, delay):
    assert Keeper().signed_in(tokens(1, lifetime), T0)[1] == ArmTimer(pytest.approx(delay))


def test_a_sign_in_without_a_refresh_token_arms_no_timer():
    assert Keeper().signed_in(tokens(1, refresh=None), T0) == [Notify(), ArmTimer(None)]


def test_the_timer_renews_and_the_renewal_is_installed_and_rearmed(keeper):
    first = keeper.tokens
    assert keeper.timer_fired() == [Refresh(first)]

    second = tokens(2, now=T0 + 1080)
    assert keeper.refreshed(first, second, T0 + 1080) == [Notify(), ArmTimer(1080)]
    assert keeper.tokens is second and keeper.refreshing is None


def test_a_rotated_refresh_token_is_kept(keeper):
    first = keeper.tokens
    keeper.timer_fired()
    rotated = tokens(2, refresh="r2")
    keeper.refreshed(first, rotated, T0)
    assert keeper.tokens.refresh_token == "r2"


def test_many_refused_callers_at_once_cause_one_refresh(keeper):
    stale = keeper.tokens.access_token
    asked = [keeper.refresh_wanted(stale) for _ in range(50)]
    assert asked[0] == [Refresh(keeper.tokens)] and all(a == [] for a in asked[1:])


def test_a_caller_whose_token_was_already_replaced_causes_no_refresh(keeper):
    stale = keeper.tokens.access_token
    keeper.timer_fired()
    keeper.refreshed(keeper.tokens, tokens(2), T0 + 1)

    assert keeper.refresh_wanted(stale) == []  # it gets the new token, nothing is sent


def test_the_timer_firing_during_a_refresh_adds_none(keeper):
    keeper.refresh_wanted(keeper.tokens.access_token)
    assert keeper.timer_fired() == []


@pytest.mark.parametrize(
    ("at", "delay"),
    [(T0 + 1080, 15.0), (T0 + 1190, 5.0), (T0 + 1198.5, MIN_DELAY), (T0 + 1300, RETRY_AFTER)],
    ids=["two-minutes-left", "ten-seconds-left", "a-second-and-a-half-left", "already-expired"],
)
def test_a_passing_failure_is_retried_within_the_token_life_then_every_retry_after(keeper, at, delay):
    first = keeper.tokens
    keeper.timer_fired()

    assert keeper.refresh_failed(first, at) == [ArmTimer(delay)]
    assert keeper.tokens is first and keeper.refreshing is None  # still signed in; may be asked again
    assert keeper.timer_fired() == [Refresh(first)]


def test_a_failure_for_good_signs_out_with_the_reason(keeper):
    first = keeper.tokens
    keeper.timer_fired()

    assert keeper.refresh_failed(first, T0, ended="Your sign-in has ended. Run %ts_login.") == [
        Notify(),
        ArmTimer(None),
    ]
    assert keeper.tokens is None and keeper.error == "Your sign-in has ended. Run %ts_login."
    assert keeper.refresh_wanted("a1") == [] and keeper.timer_fired() == []  # no loop


def test_a_refresh_that_returns_after_sign_out_revokes_the_token_it_brought(keeper):
    first = keeper.tokens
    keeper.timer_fired()
    assert keeper.signed_out() == [Notify(), ArmTimer(None), Forget(), Revoke("r1")]

    assert keeper.refreshed(first, tokens(2, refresh="r2"), T0) == [Revoke("r2"), Forget("r2")]
    assert keeper.refreshed(first, tokens(3, refresh="r1"), T0) == []  # not rotated: revoked already
    assert keeper.tokens is None


def test_a_failure_after_sign_out_changes_nothing(keeper):
    first = keeper.tokens
    keeper.timer_fired()
    keeper.signed_out()
    assert keeper.refresh_failed(first, T0, ended="ended") == [] and keeper.error is None


def test_a_new_sign_in_revokes_the_old_refresh_token_first_and_keeps_its_access_token(keeper):
    old = keeper.tokens

    assert keeper.replacing() == [Notify(), ArmTimer(None), Revoke("r1")]
    assert keeper.tokens.access_token == old.access_token and keeper.tokens.refresh_token is None
    second = tokens(2, refresh="r2")
    assert keeper.signed_in(second, T0) == [Notify(), ArmTimer(1080), Keep(second)]


def test_a_sign_in_that_finished_beside_another_is_revoked_by_the_later(keeper):
    keeper.replacing()  # two tabs: the first retires r1 ...
    assert keeper.replacing() == []  # ... the second finds nothing left to retire
    keeper.signed_in(tokens(2, refresh="r2"), T0)
    third = tokens(3, refresh="r3")
    assert keeper.signed_in(third, T0) == [Notify(), ArmTimer(1080), Keep(third), Revoke("r2")]


def test_a_sign_in_that_did_not_complete_only_says_why(keeper):
    assert keeper.failed("access_denied") == [Notify()]
    assert keeper.error == "access_denied" and keeper.tokens is not None


def test_a_refresh_without_a_refresh_token_is_asked_of_the_provider_which_ends_it():
    k = Keeper()
    k.signed_in(tokens(1, refresh=None), T0)
    assert k.refresh_wanted("a1") == [Refresh(k.tokens)]


def test_a_kept_sign_in_that_is_due_is_used_at_once_and_renewed_at_once():
    k = Keeper()
    kept = tokens(1, now=T0 - 86000)  # long expired
    assert k.restored(kept, T0) == [Notify(), Refresh(kept)]
    assert k.tokens is kept and k.refresh_wanted("a1") == []  # the renewal under way serves everyone
    assert k.refreshed(kept, tokens(2), T0)[:2] == [Notify(), ArmTimer(1080)]


def test_a_kept_sign_in_another_process_just_renewed_is_used_as_it_is():
    k = Keeper()
    assert k.restored(tokens(1, now=T0 - 60), T0) == [Notify(), ArmTimer(1200 - 120 - 60)]


def test_a_kept_sign_in_found_after_a_new_one_is_ignored(keeper):
    assert keeper.restored(tokens(9), T0) == [] and keeper.tokens.access_token == "a1"


def test_tokens_another_process_renewed_are_taken_up_and_never_revoked(keeper):
    first = keeper.tokens
    keeper.timer_fired()
    theirs = tokens(2, refresh="r2")
    assert keeper.refreshed(first, theirs, T0, fetched=False) == [Notify(), ArmTimer(1080)]
    keeper.timer_fired()
    keeper.signed_out()
    assert keeper.refreshed(theirs, tokens(3, refresh="r3"), T0, fetched=False) == []  # another process's


def test_a_sign_in_without_a_refresh_token_is_not_kept():
    assert Keeper().signed_in(tokens(1, refresh=None), T0) == [Notify(), ArmTimer(None)]

"""The token-lifetime policy on its own, driven through every path with a made-up clock."""

from __future__ import annotations

import pytest

from ts_notebook.keeper import (
    MIN_DELAY,
    RETRY_AFTER,
    ArmTimer,
    Drop,
    Forget,
    Keep,
    Keeper,
    Notify,
    Refresh,
    Revoke,
    call_needed,
    take_over,
)
from ts_notebook.tokens import TokenSet

T0 = 1_000_000.0


def tokens(
    n: int, lifetime: float = 1200, now: float = T0, refresh: str | None = "r1", sub: str = "auth0|analyst"
) -> TokenSet:
    reply = {"access_token": f"a{n}", "expires_in": lifetime, "refresh_token": refresh}
    return TokenSet.from_response(reply, now=now, claims={"sub": sub})


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


def test_the_same_person_signing_in_again_drops_the_old_refresh_token_and_never_revokes_it(keeper):
    second = tokens(2, refresh="r2")

    assert keeper.signed_in(second, T0) == [Notify(), ArmTimer(1080), Keep(second), Drop("r1")]


def test_another_person_signing_in_revokes_the_old_refresh_token_once_the_new_one_exists(keeper):
    trader = tokens(2, refresh="r2", sub="auth0|trader")

    assert keeper.signed_in(trader, T0) == [Notify(), ArmTimer(1080), Keep(trader), Revoke("r1")]


def test_a_sign_in_with_no_subject_is_taken_for_the_same_person():
    k = Keeper()
    k.signed_in(tokens(1, sub=""), T0)
    assert k.signed_in(tokens(2, refresh="r2"), T0)[-1] == Drop("r1")


@pytest.mark.parametrize(
    ("sub", "retired"), [("auth0|analyst", Drop("r2")), ("auth0|trader", Revoke("r2"))], ids=["same", "another"]
)
def test_a_refresh_back_after_a_new_sign_in_retires_what_it_brought_as_the_sign_in_would(keeper, sub, retired):
    first = keeper.tokens
    keeper.timer_fired()
    keeper.signed_in(tokens(5, refresh="r5", sub=sub), T0)  # signed in again while the refresh was out

    assert keeper.refreshed(first, tokens(2, refresh="r2"), T0) == [retired, Forget("r2")]
    assert keeper.tokens.access_token == "a5"


def test_a_failed_sign_in_leaves_the_sign_in_it_would_have_replaced_as_it_was(keeper):
    before = keeper.tokens

    assert keeper.failed("invalid_grant") == [Notify()]
    assert keeper.tokens is before and keeper.timer_fired() == [Refresh(before)]


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
    assert k.restored(kept, T0, k.restoring()) == [Notify(), Refresh(kept)]
    assert k.tokens is kept and k.refresh_wanted("a1") == []  # the renewal under way serves everyone
    assert k.refreshed(kept, tokens(2), T0)[:2] == [Notify(), ArmTimer(1080)]


def test_a_kept_sign_in_another_process_just_renewed_is_used_as_it_is():
    k = Keeper()
    assert k.restored(tokens(1, now=T0 - 60), T0, k.restoring()) == [Notify(), ArmTimer(1200 - 120 - 60)]


def test_a_kept_sign_in_found_after_a_new_one_is_ignored(keeper):
    assert keeper.restored(tokens(9), T0, keeper.restoring()) == [] and keeper.tokens.access_token == "a1"


def test_a_sign_out_while_the_kept_sign_in_was_read_wins_and_revokes_it():
    k = Keeper()
    mark = k.restoring()
    k.signed_out()  # a server's sign-out, answered while the restore still reads

    assert k.restored(tokens(1, refresh="kept"), T0, mark) == [Revoke("kept"), Forget("kept")]
    assert k.tokens is None


@pytest.mark.parametrize("sub", ["auth0|analyst", "auth0|trader"], ids=["same", "another"])
def test_a_sign_in_while_the_kept_one_was_read_wins_and_drops_it(sub):
    k = Keeper()
    mark = k.restoring()
    k.signed_in(tokens(5, refresh="new", sub=sub), T0)

    assert k.restored(tokens(1, refresh="kept"), T0, mark) == [Drop("kept"), Forget("kept")]  # another process's, maybe
    assert k.tokens.access_token == "a5"


@pytest.mark.parametrize("fetched", [False, None], ids=["taken-over", "restored"])
def test_another_person_replacing_a_sign_in_from_the_store_drops_it_others_may_use_it(fetched):
    k = Keeper()
    if fetched is None:
        k.restored(tokens(1, now=T0 - 60), T0, k.restoring())
    else:
        k.signed_in(tokens(1), T0)
        k.timer_fired()
        k.refreshed(k.tokens, tokens(2, refresh="r1"), T0, fetched=False)  # another process's renewal

    trader = tokens(3, refresh="r3", sub="auth0|trader")
    assert k.signed_in(trader, T0)[-1] == Drop("r1")


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


# -- the policy a store and the hub service ask ---------------------------------------------------


@pytest.mark.parametrize(
    ("kept", "now", "decision", "base"),
    [
        (None, T0 + 1100, "refresh", "ours"),
        (tokens(2, now=T0 + 600, sub="auth0|other"), T0 + 1100, "another person", "ours"),
        (tokens(2, now=T0 + 600), T0 + 1100, "take", "kept"),  # renewed by another process, not due yet
        (tokens(2, now=T0 - 30), T0 + 1100, "refresh", "ours"),  # older than ours: its token may be spent
        (tokens(2, now=T0 + 100), T0 + 1250, "refresh", "kept"),  # newer but due: renew that one
    ],
    ids=["nothing-kept", "another-person", "renewed-elsewhere", "older-record", "newer-but-due"],
)
def test_a_renewal_takes_over_only_the_same_persons_newer_tokens(kept, now, decision, base):
    ours = tokens(1)
    got, used = take_over(kept, ours, now)
    assert got == decision and used is (ours if base == "ours" else kept)


@pytest.mark.parametrize(
    ("stale", "now", "needed"),
    [(None, T0, False), (None, T0 + 1100, True), ("a1", T0, True), ("a0", T0, False), ("a0", T0 + 1100, True)],
    ids=["asked-for-nothing", "due", "a-token-refused", "a-token-replaced-since", "replaced-but-due"],
)
def test_a_renewal_asked_for_from_outside_reaches_the_provider_only_when_refused_or_due(stale, now, needed):
    assert call_needed(tokens(1), stale, now) is needed
    assert call_needed(None, stale, now) is False

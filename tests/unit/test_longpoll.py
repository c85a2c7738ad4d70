"""The long-poll's follower policy on its own: when a follower asks again, and when it calls
the holder down (the loops that use it are tested with real servers and a canned service)."""

from __future__ import annotations

import pytest

from ts_notebook import longpoll
from ts_notebook.longpoll import Follower, poll_arguments


def test_a_follower_asks_again_at_most_a_second_apart_while_the_holder_restarts():
    follower = Follower()
    waits = [follower.failed(now) for now in (0.0, 0.3, 1.0, 2.5, 5.0, 10.0, 19.0)]
    assert [w for w, _ in waits] == [0.25, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert not any(down for _, down in waits)


def test_after_a_restart_s_worth_the_follower_backs_off_and_calls_the_holder_down():
    follower = Follower()
    follower.failed(0.0)
    waits = [follower.failed(now) for now in (20.0, 30.0, 40.0, 3 * 3600.0)]
    assert [w for w, _ in waits] == [0.5, 1.0, 2.0, 4.0] and all(down for _, down in waits)
    for _ in range(2000):  # hours of failures: bounded, never an overflow
        wait, _ = follower.failed(3 * 3600.0)
    assert wait == longpoll.RETRY_MOST


def test_an_answer_starts_the_schedule_over():
    follower = Follower()
    for now in (0.0, 25.0, 50.0):
        follower.failed(now)
    follower.answered()
    assert follower.failed(60.0) == (longpoll.RETRY_FIRST, False)


@pytest.mark.parametrize(
    ("since", "timeout", "read"),
    [("7", "25", (7, 25.0)), ("7", "-3", (7, 0.0)), ("7", "1e9", (7, longpoll.LONGPOLL_MAX))],
)
def test_poll_arguments_are_read_and_bounded(since, timeout, read):
    assert poll_arguments(since, timeout) == read


@pytest.mark.parametrize(("since", "timeout"), [("seven", "25"), ("7", "nan"), ("7", "inf"), ("7.5", "1")])
def test_poll_arguments_that_are_not_numbers_are_refused(since, timeout):
    with pytest.raises(ValueError):
        poll_arguments(since, timeout)

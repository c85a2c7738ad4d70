"""The token bucket the hub service's rates are made of: exact answers on a given clock."""

from __future__ import annotations

import pytest

from ts_notebook.rates import Bucket


def test_a_burst_then_the_rate_and_a_refusal_says_how_long_to_wait():
    b = Bucket(burst=3, per_second=0.5, now=100.0)
    assert [b.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(100.0) == pytest.approx(2.0)  # one call comes back every 2 s
    assert b.take(101.0) == pytest.approx(1.0)  # a refusal takes nothing
    assert b.take(102.0) == 0.0
    assert b.wait(102.0) == pytest.approx(2.0)


def test_it_never_holds_more_than_its_burst_and_a_clock_going_back_changes_nothing():
    b = Bucket(burst=2, per_second=1.0, now=0.0)
    assert [b.take(1000.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]
    assert b.take(500.0) == pytest.approx(1.0)  # back in time: no refill, no debt


@pytest.mark.parametrize(("burst", "rate"), [(0, 1), (1, 0), (1, -1), (float("inf"), 1), (1, float("nan"))])
def test_a_bucket_that_could_never_or_always_answer_is_refused(burst, rate):
    with pytest.raises(ValueError):
        Bucket(burst, rate, 0.0)

"""The one backoff schedule: first, doubling, capped, and bounded however long it fails."""

from __future__ import annotations

import pytest

from ts_notebook.backoff import delay


@pytest.mark.parametrize(
    ("first", "most", "waits"),
    [
        (0.5, 8.0, [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]),
        (0.5, 15.0, [0.5, 1.0, 2.0, 4.0, 8.0, 15.0]),
        (0.25, 1.0, [0.25, 0.5, 1.0, 1.0, 1.0, 1.0]),
    ],
    ids=["session-retries", "stream-reconnects", "restart-steps"],
)
def test_the_wait_starts_at_first_and_doubles_up_to_most(first, most, waits):
    assert [delay(n, first, most) for n in range(1, 7)] == waits


@pytest.mark.parametrize("failures", [0, -3], ids=["none", "negative"])
def test_fewer_than_one_failure_waits_as_one_never_a_busy_loop(failures):
    assert delay(failures, 0.5, 8.0) == 0.5


@pytest.mark.parametrize("failures", [1025, 10**6, 10**18], ids=["hours", "days", "absurd"])
def test_however_many_failures_the_wait_is_the_cap_and_never_overflows(failures):
    assert delay(failures, 0.25, 10.0) == 10.0


def test_a_first_wait_above_the_cap_is_capped():
    assert delay(1, 20.0, 10.0) == 10.0


def test_a_cap_of_zero_means_no_wait():  # a test compressing time sets it so
    assert delay(5000, 0.25, 0.0) == 0.0

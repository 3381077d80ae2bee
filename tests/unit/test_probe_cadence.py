"""ProbeCadence: backoff capped low, and dense checks around the expected readiness."""

from __future__ import annotations

import tenacity

from ollamatopo.engine._probes import DENSE_S, EARLY_S, LATE_S, SPARSE_S, Backoff, ProbeCadence


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def state(attempt: int) -> tenacity.RetryCallState:
    retry_state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
    retry_state.attempt_number = attempt
    return retry_state


BACKOFF = Backoff(initial_s=0.05, cap_s=0.15)


def test_without_history_it_is_the_capped_backoff() -> None:
    clock = Clock()
    cadence = ProbeCadence(BACKOFF, None, clock)
    for attempt in range(1, 30):
        clock.now += 0.1
        assert 0.01 <= cadence(state(attempt)) <= BACKOFF.cap_s


def test_with_history_checks_land_on_the_window_and_are_dense_inside_it() -> None:
    clock = Clock()
    expected = 2.0
    cadence = ProbeCadence(BACKOFF, expected, clock)
    opens, closes = expected - EARLY_S, expected + LATE_S
    clock.now += opens - 0.03  # just before the window: the wait stops at its opening
    assert cadence(state(10)) <= 0.03 + 1e-9
    waits = []
    for step in range(1, 10):
        clock.now = 100.0 + opens + step * 0.05
        waits.append(cadence(state(10 + step)))
    assert max(waits) <= DENSE_S
    clock.now = 100.0 + closes + 0.01  # readiness did not come as expected: back off again
    assert all(cadence(state(30)) <= BACKOFF.cap_s for _ in range(20))
    assert max(cadence(state(30)) for _ in range(50)) > DENSE_S


def test_an_expected_readiness_shorter_than_the_early_margin_is_dense_from_the_start() -> None:
    clock = Clock()
    cadence = ProbeCadence(BACKOFF, 0.1, clock)
    assert max(cadence(state(5)) for _ in range(20)) <= DENSE_S


def test_long_before_the_window_checks_are_sparse_and_the_window_is_not_overshot() -> None:
    clock = Clock()
    cadence = ProbeCadence(BACKOFF, 4.0, clock)  # the window opens 3.7 s after the start
    clock.now += 0.1
    assert all(cadence(state(2)) == SPARSE_S for _ in range(20))  # not the 0.15 s cap
    clock.now = 100.0 + 4.0 - EARLY_S - 0.2
    assert abs(cadence(state(8)) - 0.2) < 1e-9  # lands on the opening, not past it

"""The provider circuit breaker: opens on failures, half-open admits exactly one trial."""

from __future__ import annotations

from app.providers.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _opened(clock: Clock) -> CircuitBreaker:
    breaker = CircuitBreaker("acme", failure_threshold=3, reset_ms=1000, clock=clock)
    for _ in range(3):
        permit = breaker.try_acquire()
        assert permit is not None
        breaker.record_failure(permit)
    return breaker


def test_breaker_opens_when_failures_reach_threshold() -> None:
    clock = Clock()
    breaker = CircuitBreaker("acme", failure_threshold=3, reset_ms=1000, clock=clock)
    for _ in range(2):
        permit = breaker.try_acquire()
        assert permit is not None
        breaker.record_failure(permit)
    assert breaker.state == "closed"
    permit = breaker.try_acquire()
    assert permit is not None
    breaker.record_failure(permit)
    assert breaker.state == "open"
    assert breaker.try_acquire() is None


def test_success_resets_count_when_failures_are_not_consecutive() -> None:
    clock = Clock()
    breaker = CircuitBreaker("acme", failure_threshold=2, reset_ms=1000, clock=clock)
    for verdict in ("fail", "ok", "fail", "ok", "fail"):
        permit = breaker.try_acquire()
        assert permit is not None
        if verdict == "fail":
            breaker.record_failure(permit)
        else:
            breaker.record_success(permit)
    assert breaker.state == "closed"


def test_half_open_admits_exactly_one_trial_when_many_callers_arrive() -> None:
    clock = Clock()
    breaker = _opened(clock)
    clock.now += 1.0
    assert breaker.state == "half_open"
    permits = [breaker.try_acquire() for _ in range(10)]
    admitted = [permit for permit in permits if permit is not None]
    assert len(admitted) == 1
    assert admitted[0].trial


def test_trial_success_closes_breaker_when_provider_recovered() -> None:
    clock = Clock()
    breaker = _opened(clock)
    clock.now += 1.0
    trial = breaker.try_acquire()
    assert trial is not None
    breaker.record_success(trial)
    assert breaker.state == "closed"
    assert all(breaker.try_acquire() is not None for _ in range(5))


def test_trial_failure_reopens_breaker_for_another_period_when_provider_still_down() -> None:
    clock = Clock()
    breaker = _opened(clock)
    clock.now += 1.0
    trial = breaker.try_acquire()
    assert trial is not None
    breaker.record_failure(trial)
    assert breaker.state == "open"
    clock.now += 0.5
    assert breaker.try_acquire() is None
    clock.now += 0.6
    assert breaker.try_acquire() is not None


def test_late_success_from_before_opening_does_not_close_when_breaker_opened_since() -> None:
    clock = Clock()
    breaker = CircuitBreaker("acme", failure_threshold=1, reset_ms=1000, clock=clock)
    slow = breaker.try_acquire()
    failing = breaker.try_acquire()
    assert slow is not None
    assert failing is not None
    breaker.record_failure(failing)
    breaker.record_success(slow)
    assert breaker.state == "open"

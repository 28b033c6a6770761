"""Full-jitter backoff: uniform below an exponentially growing, capped ceiling, and the
stamina hook every retry loop uses."""

from __future__ import annotations

import pytest
import stamina

from app.platform.retries import FullJitter, full_jitter_s


@pytest.mark.parametrize(
    ("attempt", "ceiling_s"), [(1, 0.1), (2, 0.2), (3, 0.4), (5, 1.6), (6, 2.0), (60, 2.0)]
)
def test_ceiling_doubles_then_caps_when_attempts_grow(attempt: int, ceiling_s: float) -> None:
    assert full_jitter_s(attempt, 100, 2000, draw=lambda: 1.0) == pytest.approx(ceiling_s)
    assert full_jitter_s(attempt, 100, 2000, draw=lambda: 0.0) == 0.0


def test_waits_spread_over_the_whole_range_when_many_callers_retry() -> None:
    waits = [full_jitter_s(4, 100, 2000) for _ in range(2000)]
    assert all(0 <= wait <= 0.8 for wait in waits)
    assert min(waits) < 0.05
    assert max(waits) > 0.75


def test_hook_refuses_at_once_when_the_error_is_not_retryable() -> None:
    hook = FullJitter(lambda error: isinstance(error, TimeoutError), 100, 2000)
    assert hook(ValueError("final")) is False
    assert hook.failures == 0


def test_hook_waits_within_the_growing_ceiling_when_failures_repeat() -> None:
    hook = FullJitter(lambda error: isinstance(error, TimeoutError), 100, 2000)
    waits = [hook(TimeoutError()) for _ in range(3)]
    assert hook.failures == 3
    assert all(isinstance(wait, float) for wait in waits)
    assert 0 <= float(waits[0]) <= 0.1
    assert 0 <= float(waits[2]) <= 0.4


def _fail_every_time(hook: FullJitter, attempts: int) -> int:
    calls = 0
    try:
        for attempt in stamina.retry_context(on=hook, attempts=attempts, timeout=5):
            with attempt:
                calls += 1
                raise TimeoutError
    except TimeoutError:
        return calls
    return calls


def test_stamina_stops_after_the_attempt_cap_when_every_attempt_fails() -> None:
    hook = FullJitter(lambda error: isinstance(error, TimeoutError), 1, 1)
    assert _fail_every_time(hook, attempts=4) == 4
    assert hook.failures == 4  # stamina asks the hook about the last failure too

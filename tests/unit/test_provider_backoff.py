"""Full-jitter backoff: uniform below an exponentially growing, capped ceiling."""

from __future__ import annotations

import pytest

from app.providers.caller import full_jitter_s


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

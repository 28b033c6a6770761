"""Capped, fully jittered retries, on stamina, for every caller that repeats a request.

stamina runs the loop (attempt count, total deadline, instrumentation, and its testing
switch); what it cannot express is "full jitter", a wait drawn uniformly from
[0, min(cap, base * 2^n)], so that callers who failed together do not retry together.
stamina takes a backoff hook that returns the wait itself, and `FullJitter` is that hook.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


def full_jitter_s(
    attempt: int, base_ms: int, cap_ms: int, draw: Callable[[], float] = random.random
) -> float:
    """The wait after failed attempt `attempt` (1-based): uniform in
    [0, min(cap, base * 2^(attempt-1))], in seconds."""
    ceiling_ms = min(cap_ms, base_ms * (1 << min(attempt - 1, 30)))
    return draw() * ceiling_ms / 1000


@dataclass
class FullJitter:
    """stamina's `on=` hook: False for an error not worth repeating (stamina re-raises it
    at once), else the full-jitter wait before the next attempt. One per retry loop: it
    counts the failures it has seen."""

    retryable: Callable[[Exception], bool]
    base_ms: int
    cap_ms: int
    failures: int = 0

    def __call__(self, error: Exception) -> bool | float:
        if not self.retryable(error):
            return False
        self.failures += 1
        return full_jitter_s(self.failures, self.base_ms, self.cap_ms)

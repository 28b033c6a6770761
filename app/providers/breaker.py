"""A circuit breaker per provider: closed, open, half-open with exactly one trial call.

Why not purgatory: its half-open state admits every request that arrives while it is
half-open (its `handle_new_request` does nothing there), so a recovering provider would
get a burst instead of one probe; it also times the open period on the wall clock. This
breaker is small, runs on one event loop (no awaits inside a transition, so no lock), and
uses a monotonic clock.

Rules:
- closed: every call goes through; `failure_threshold` consecutive failures open it.
- open: calls are refused at once until `reset_ms` have passed since it opened.
- half-open: the first caller after that gets the one trial permit; every other caller is
  refused while the trial runs. Trial success closes the breaker, failure (or a trial that
  never reports) opens it again for another `reset_ms`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from app.providers.domain import BreakerState


@dataclass(frozen=True, slots=True)
class Permit:
    """Permission for one call. `trial` marks the half-open probe."""

    generation: int
    trial: bool


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        reset_ms: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._threshold = failure_threshold
        self._reset_s = reset_ms / 1000
        self._clock = clock
        self._opened = False
        self._opened_at = 0.0
        self._failures = 0
        self._trial_out = False
        # Bumped on every transition, so a late report from a call admitted under an
        # earlier state cannot close or re-open the breaker by mistake.
        self._generation = 0

    @property
    def state(self) -> BreakerState:
        if not self._opened:
            return "closed"
        if self._trial_out or self._clock() - self._opened_at >= self._reset_s:
            return "half_open"
        return "open"

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def try_acquire(self) -> Permit | None:
        """A permit for one call, or None when the call must be refused without trying."""
        if not self._opened:
            return Permit(self._generation, trial=False)
        if self._trial_out or self._clock() - self._opened_at < self._reset_s:
            return None
        self._trial_out = True
        self._generation += 1
        return Permit(self._generation, trial=True)

    def record_success(self, permit: Permit) -> None:
        if permit.generation != self._generation:
            return
        if permit.trial:
            self._close()
        elif not self._opened:
            self._failures = 0

    def record_failure(self, permit: Permit) -> None:
        if permit.generation != self._generation:
            return
        if permit.trial:
            self._open()
            return
        if self._opened:
            return
        self._failures += 1
        if self._failures >= self._threshold:
            self._open()

    def release(self, permit: Permit) -> None:
        """The call ended with neither verdict (e.g. a 4xx): a trial still counts as healthy,
        because the provider answered."""
        self.record_success(permit)

    def _open(self) -> None:
        self._opened = True
        self._opened_at = self._clock()
        self._trial_out = False
        self._generation += 1

    def _close(self) -> None:
        self._opened = False
        self._failures = 0
        self._trial_out = False
        self._generation += 1

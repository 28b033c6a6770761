"""The fault API's state: per provider and operation, what should go wrong.

- latency_ms: added before the provider processes the request;
- error_rate: share of requests answered 503 without processing;
- timeout_rate: share held open for SIM_HOLD_S, then 504, without processing;
- lost_response_rate: share processed, then held open (the caller never hears back);
- webhook_duplicates: extra deliveries of each event (same webhook-id);
- webhook_delay_ms: events of this operation wait this long first, so a later operation's
  events overtake them (out-of-order delivery);
- remaining: apply to this many requests, then clear (null = until changed).
Rates are drawn from a seeded random generator, so a run can be repeated.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any

OPERATIONS = (
    "tokenize",
    "authorize",
    "capture",
    "void",
    "refund",
    "payout",
    "lookup",
    "settlement",
)


@dataclass
class Fault:
    latency_ms: int = 0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    lost_response_rate: float = 0.0
    webhook_duplicates: int = 0
    webhook_delay_ms: int = 0
    remaining: int | None = None

    @classmethod
    def parse(cls, body: Any) -> Fault:
        if not isinstance(body, dict):
            raise ValueError("fault must be an object")
        known = {item.name for item in fields(cls)}
        unknown = set(body) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        fault = cls(**body)
        for name in ("error_rate", "timeout_rate", "lost_response_rate"):
            value = getattr(fault, name)
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name} must lie in [0, 1]")
        for name, high in (
            ("latency_ms", 120_000),
            ("webhook_duplicates", 10),
            ("webhook_delay_ms", 120_000),
        ):
            value = getattr(fault, name)
            if not isinstance(value, int) or not 0 <= value <= high:
                raise ValueError(f"{name} must be an integer in [0, {high}]")
        if fault.remaining is not None and (
            not isinstance(fault.remaining, int) or fault.remaining < 1
        ):
            raise ValueError("remaining must be a positive integer or null")
        return fault


@dataclass(frozen=True)
class Draw:
    """What happens to one request."""

    latency_s: float
    error: bool
    timeout: bool
    lost_response: bool
    webhook_duplicates: int
    webhook_delay_s: float


class Faults:
    def __init__(self, seed: int = 7) -> None:
        self._faults: dict[tuple[str, str], Fault] = {}
        self._random = random.Random(seed)  # noqa: S311 - fault injection, not crypto
        # Requests seen per (provider, operation): tests count attempts with it.
        self.requests: Counter[tuple[str, str]] = Counter()

    def set(self, provider: str, operation: str, fault: Fault) -> None:
        if operation not in OPERATIONS:
            raise ValueError(f"operation must be one of {', '.join(OPERATIONS)}")
        self._faults[(provider, operation)] = fault

    def clear(self, provider: str | None = None) -> None:
        for key in [key for key in self._faults if provider is None or key[0] == provider]:
            del self._faults[key]

    def reseed(self, seed: int) -> None:
        self._random.seed(seed)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = {}
        for (provider, operation), fault in self._faults.items():
            result.setdefault(provider, {})[operation] = asdict(fault)
        return result

    def draw(self, provider: str, operation: str) -> Draw:
        self.requests[(provider, operation)] += 1
        fault = self._faults.get((provider, operation))
        if fault is None:
            return Draw(0.0, False, False, False, 0, 0.0)
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                del self._faults[(provider, operation)]
        roll = self._random.random
        return Draw(
            latency_s=fault.latency_ms / 1000,
            error=fault.error_rate > 0 and roll() < fault.error_rate,
            timeout=fault.timeout_rate > 0 and roll() < fault.timeout_rate,
            lost_response=fault.lost_response_rate > 0 and roll() < fault.lost_response_rate,
            webhook_duplicates=fault.webhook_duplicates,
            webhook_delay_s=fault.webhook_delay_ms / 1000,
        )

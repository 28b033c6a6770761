"""What a drill observed: a timeline, detection and recovery times, the invariant checks,
and the `ops.drill` evidence record made from them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Which controls a drill exercises. Every drill tests the incident-response plan (PCI DSS
# 12.10.2 asks for it to be tested at least once a year; SOC 2 CC7.4/CC7.5 for response
# and recovery); the rest name what the fault puts at risk.
BASE_CONTROLS = ("PCI-DSS-4.0.1:12.10.2", "SOC2:CC7.4", "SOC2:CC7.5")
CONTROLS: dict[str, tuple[str, ...]] = {
    "vault-down": ("SOC2:A1.2",),
    "opa-down": ("SOC2:A1.2", "SOC2:CC6.1"),
    "db-restart": ("SOC2:A1.2", "SOC2:PI1.3", "ISO27001:A.5.30"),
    "key-compromise": ("PCI-DSS-4.0.1:3.7.5", "SOC2:CC6.1"),
    "provider-outage": ("SOC2:A1.2", "ISO27001:A.5.30"),
    "double-charge": ("SOC2:PI1.3", "PCI-DSS-4.0.1:10.2.1"),
}


def controls_for(name: str) -> list[str]:
    return [*BASE_CONTROLS, *CONTROLS.get(name, ())]


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class DrillReport:
    """Filled in as the drill runs; `passed` only when every check held."""

    name: str
    started_monotonic: float = field(default_factory=time.monotonic)
    started_at: str = field(default_factory=_utc_now)
    timeline: list[tuple[int, str]] = field(default_factory=list)
    detected_after_s: float | None = None
    recovered_after_s: float | None = None
    checks: dict[str, bool] = field(default_factory=dict)
    figures: dict[str, int] = field(default_factory=dict)
    evidence_id: str | None = None

    @property
    def steps(self) -> list[str]:
        return [event for _, event in self.timeline]

    @property
    def passed(self) -> bool:
        return (
            self.detected_after_s is not None
            and self.recovered_after_s is not None
            and bool(self.checks)
            and all(self.checks.values())
        )

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_monotonic

    def note(self, event: str) -> None:
        elapsed_ms = int(self.elapsed_s() * 1000)
        self.timeline.append((elapsed_ms, event))
        print(f"[{self.name}] +{elapsed_ms / 1000:7.2f} s  {event}", flush=True)

    def check(self, name: str, held: bool, detail: str = "") -> bool:
        self.checks[name] = held
        self.note(
            f"check {name}: {'ok' if held else 'FAILED'}{' (' + detail + ')' if detail else ''}"
        )
        return held

    def evidence(self) -> dict[str, Any]:
        """The `ops.drill` record (integers only: the evidence log refuses floats)."""

        def millis(seconds: float | None) -> int | None:
            return None if seconds is None else int(seconds * 1000)

        return {
            "type": "ops.drill",
            "control_refs": controls_for(self.name),
            "result": "pass" if self.passed else "fail",
            "subject": {},
            "tool": {"name": "moneypath-drill", "version": "1"},
            "actor": f"moneypath drill {self.name}",
            "started_at": self.started_at,
            "finished_at": _utc_now(),
            "details": {
                "drill": self.name,
                "detected_after_ms": millis(self.detected_after_s),
                "recovered_after_ms": millis(self.recovered_after_s),
                "checks": dict(self.checks),
                "figures": dict(self.figures),
                "timeline": [{"t_ms": t, "event": e[:300]} for t, e in self.timeline[:200]],
            },
        }

    def summary(self) -> str:
        width = max((len(name) for name in self.checks), default=10)
        lines = [f"drill {self.name}: {'PASS' if self.passed else 'FAIL'}"]
        lines.append(f"  detected after  {self.detected_after_s}")
        lines.append(f"  recovered after {self.recovered_after_s}")
        for name, held in self.checks.items():
            lines.append(f"  {name:<{width}}  {'ok' if held else 'FAILED'}")
        for name, value in self.figures.items():
            lines.append(f"  {name:<{width}}  {value}")
        if self.evidence_id:
            lines.append(f"  evidence        {self.evidence_id}")
        return "\n".join(lines)

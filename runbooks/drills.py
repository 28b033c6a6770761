"""Tabletop drills that really inject a fault into a running dev stack and check detection.

Run one against a throwaway stack:   python -m runbooks.drills vault-down
Each drill prints what it did and what it observed, and exits non-zero when the fault
was not detected or the stack did not recover.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.entrypoints.devstack import Ports, Stack

DETECTION_DEADLINE_S = 15.0
POLL_INTERVAL_S = 0.25


@dataclass
class DrillReport:
    name: str
    steps: list[str] = field(default_factory=list)
    detected_after_s: float | None = None
    recovered_after_s: float | None = None

    @property
    def passed(self) -> bool:
        return self.detected_after_s is not None and self.recovered_after_s is not None

    def note(self, line: str) -> None:
        self.steps.append(line)
        print(f"[{self.name}] {line}", flush=True)


def _poll(check: Callable[[], bool], deadline_s: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        try:
            if check():
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(POLL_INTERVAL_S)
    return None


def _readyz(stack: Stack) -> httpx.Response:
    return httpx.get(f"{stack.api_url}/readyz", timeout=5)


def _dependency_down_drill(stack: Stack, service: str, check_name: str) -> DrillReport:
    """Stop one backing service, expect /readyz to name it, restart, expect recovery."""
    report = DrillReport(f"{check_name}-down")
    if _readyz(stack).status_code != 200:
        report.note("stack not ready before the fault; aborting")
        return report
    report.note(f"injecting fault: stopping {service}")
    stack.stop(service)
    report.detected_after_s = _poll(
        lambda: _readyz(stack).status_code == 503 and check_name in _readyz(stack).json()["down"],
        DETECTION_DEADLINE_S,
    )
    report.note(f"detected by /readyz after {report.detected_after_s} s")
    report.note(f"recovering: starting {service} again")
    {"openbao": stack.start_vault, "opa": stack.start_opa}[service]()
    if service == "openbao":
        # Dev OpenBao is in-memory: a restart loses mounts and secrets, so re-run the
        # bootstrap exactly as a fresh `moneypath up` would.
        stack.bootstrap()
    report.recovered_after_s = _poll(
        lambda: _readyz(stack).status_code == 200, DETECTION_DEADLINE_S
    )
    report.note(f"recovered after {report.recovered_after_s} s")
    return report


DRILLS: dict[str, Callable[[Stack], DrillReport]] = {
    "vault-down": lambda stack: _dependency_down_drill(stack, "openbao", "vault"),
    "opa-down": lambda stack: _dependency_down_drill(stack, "opa", "opa"),
}


def run_drill(name: str, root: Path | None = None) -> DrillReport:
    """Start a throwaway stack on free ports, run drill `name` against it, stop it."""
    with tempfile.TemporaryDirectory(prefix="drill-") as scratch:
        stack = Stack(root=root or Path(scratch), ports=Ports.free(), watch_policies=False)
        with stack.running(apps=True):
            return DRILLS[name](stack)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runbooks.drills")
    parser.add_argument("drill", choices=sorted(DRILLS))
    args = parser.parse_args(argv)
    report = run_drill(args.drill)
    print(f"[{report.name}] {'PASS' if report.passed else 'FAIL'}", flush=True)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())

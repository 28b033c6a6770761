"""The runbook drills really inject their fault, and the stack detects it and recovers."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbooks.drills import run_drill


@pytest.mark.parametrize("drill", ["vault-down", "opa-down"])
def test_drill_detects_the_fault_and_recovers(drill: str, tmp_path: Path) -> None:
    report = run_drill(drill, root=tmp_path)
    assert report.detected_after_s is not None, report.steps
    assert report.recovered_after_s is not None, report.steps

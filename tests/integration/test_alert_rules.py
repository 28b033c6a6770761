"""The Prometheus rules in alerts/ pass their promtool unit tests, and those tests can fail."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROMTOOL = REPO / ".tools" / "bin" / "promtool"


def _promtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} is missing: run `make install` (it builds promtool with go)")
    return subprocess.run(
        [str(PROMTOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_alert_rules_pass_promtool_check_and_unit_tests_when_unchanged() -> None:
    rule_files = sorted(str(path) for path in (REPO / "alerts").glob("*.yml"))
    test_files = sorted(str(path) for path in (REPO / "alerts" / "tests").glob("*.yml"))
    assert rule_files
    assert test_files
    checked = _promtool("check", "rules", *rule_files)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", *test_files)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_alert_unit_tests_fail_when_a_threshold_is_loosened(tmp_path: Path) -> None:
    shutil.copytree(REPO / "alerts", tmp_path / "alerts")
    rules = tmp_path / "alerts" / "moneypath.yml"
    text = rules.read_text()
    assert "expr: moneypath:provider_error_ratio > 0.1" in text
    rules.write_text(text.replace("provider_error_ratio > 0.1", "provider_error_ratio > 0.5"))
    tested = _promtool("test", "rules", "alerts/tests/moneypath_test.yml", cwd=tmp_path)
    assert tested.returncode != 0
    assert "ProviderDegraded" in tested.stdout + tested.stderr

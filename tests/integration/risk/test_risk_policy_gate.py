"""A change to risk.rego goes through the pipeline's `opa test` gate like any policy: the
real rules pass it, and a loosened limit is caught by risk_test.rego and fails it."""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline.gates import GATES
from pipeline.runner import decide_gate
from tests.support.pipeline_project import make_project, workspace

REPO = Path(__file__).resolve().parents[3]


def _project_with_risk_policy(tmp_path: Path) -> Path:
    root = make_project(tmp_path / "repo")
    for name in ("risk.rego", "risk_test.rego"):
        shutil.copy(REPO / "policies" / name, root / "policies" / name)
    return root


def test_opa_gate_passes_when_risk_rules_and_their_tests_agree(tmp_path: Path) -> None:
    root = _project_with_risk_policy(tmp_path)
    ws = workspace(root)
    decision = decide_gate(ws, GATES["opa"](ws), [])
    assert decision["result"] == "pass", decision["violations"]


def test_opa_gate_fails_when_a_risk_limit_is_loosened_without_its_tests(tmp_path: Path) -> None:
    root = _project_with_risk_policy(tmp_path)
    rules = root / "policies" / "risk.rego"
    loosened = rules.read_text().replace('"count": 5,', '"count": 50,', 1)
    assert loosened != rules.read_text()
    rules.write_text(loosened)
    ws = workspace(root)
    decision = decide_gate(ws, GATES["opa"](ws), [])
    assert decision["result"] == "fail"
    assert any("velocity_count_1h" in v or "hourly_count" in v for v in decision["violations"]), (
        decision["violations"]
    )

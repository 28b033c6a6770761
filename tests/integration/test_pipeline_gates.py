"""Each gate fails on its planted problem and passes on a clean tree, as decided by Rego.

Every test runs the real tool (bandit, pip-audit against the offline PyPA snapshot, checkov,
opa, pytest) on a small temporary project, never on the real tree, and asks the real OPA
binary for the verdict through `policies/pipeline/`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.advisory_snapshot import PROVENANCE_PATH, read_provenance
from pipeline.gates import GATES, locked_pins
from pipeline.runner import decide_gate, gate_record, run_pipeline, worktree_clean
from pipeline.waivers import load as load_waivers
from pipeline.workspace import HOME, Workspace
from tests.support.pipeline_project import ROOT_DOCKERFILE, commit_all, make_project, workspace


def _sarif_rules(root: Path, gate: str) -> set[str]:
    """The rule ids of the SARIF 2.1.0 report a gate left for code scanning."""
    document = json.loads((root.parent / "reports" / "sarif" / f"{gate}.sarif").read_text())
    assert document["version"] == "2.1.0"
    return {r["ruleId"] for run in document["runs"] for r in run["results"]}


def decide(root: Path, gate: str, waivers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    ws = workspace(root)
    result = GATES[gate](ws)
    return decide_gate(ws, result, waivers or [])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "repo")


def test_bandit_gate_passes_when_the_tree_is_clean(project: Path) -> None:
    assert decide(project, "bandit")["result"] == "pass"


def test_bandit_gate_fails_when_a_file_has_a_high_issue(project: Path) -> None:
    (project / "demo" / "danger.py").write_text(
        "import subprocess\n\n\ndef run(cmd: str) -> None:\n    subprocess.Popen(cmd, shell=True)\n"
    )
    decision = decide(project, "bandit")
    assert decision["result"] == "fail"
    assert any("B602" in v and "danger.py" in v for v in decision["violations"])
    assert "B602" in _sarif_rules(project, "bandit")


def test_pip_audit_gate_passes_when_the_lock_is_clean(project: Path) -> None:
    decision = decide(project, "pip-audit")
    assert decision == {**decision, "result": "pass", "violations": []}


def test_pip_audit_evidence_names_the_shipped_snapshot_when_run_with_defaults(
    project: Path,
) -> None:
    ws = workspace(project)
    result = GATES["pip-audit"](ws)
    decision = decide_gate(ws, result, [])
    provenance = read_provenance(HOME / PROVENANCE_PATH)
    record = gate_record(
        result, decision, commit="0" * 40, actor="ci-test", run_id="run_x", policy_digest="d"
    )
    advisory_db = record["details"]["advisory_db"]
    assert advisory_db["source"] == "snapshot"
    assert advisory_db["snapshot_date"] == provenance.snapshot_date
    assert advisory_db["sha256"] == "sha256:" + provenance.archive_sha256
    assert advisory_db["upstream_commit"] == provenance.commit
    assert "tree_mismatch" not in advisory_db
    assert decision["result"] == "pass"


def test_pip_audit_gate_asks_the_online_service_and_fails_closed_when_it_is_unreachable(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pip-audit reaches its online service through requests, which honours the proxy
    # variables: a closed local port makes "unreachable" certain on any machine.
    closed = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HTTPS_PROXY", closed)
    monkeypatch.setenv("https_proxy", closed)
    ws = dataclasses.replace(workspace(project), advisory_source="online")
    result = GATES["pip-audit"](ws)
    assert result.facts["advisory_db"]["source"] == "online"
    assert result.facts["advisory_db"]["sha256"] is None
    assert "queried" not in result.facts, "the local snapshot server must not be used"
    decision = decide_gate(ws, result, [])
    assert decision["result"] == "fail"
    assert any("tool could not run" in v for v in decision["violations"]), decision


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_default_paths_lie_inside_the_checkout_when_nothing_is_given(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path)
    checkout = HOME.resolve()
    defaults = {
        "opa": ws.opa,
        "checkov": ws.checkov,
        "advisory_db": ws.advisory_db,
        "policy_dir": ws.policy_dir,
        "bin_dir": ws.bin_dir,
    }
    outside = {
        name: str(path)
        for name, path in defaults.items()
        if not path.resolve().is_relative_to(checkout)
    }
    assert outside == {}, f"defaults outside {checkout}"
    assert ws.advisory_source == "snapshot"
    assert (ws.advisory_db.parent / "snapshot.json").is_file(), "make install unpacks it"


def test_pip_audit_gate_reports_the_pysec_id_when_jinja2_2_10_is_pinned(tmp_path: Path) -> None:
    root = make_project(tmp_path / "repo", pins=("jinja2==2.10", "markupsafe==3.0.2"))
    decision = decide(root, "pip-audit")
    assert decision["result"] == "fail"
    jinja = [v for v in decision["violations"] if "jinja2 2.10" in v]
    assert any("PYSEC-2019-217" in v and "CVE-2019-10906" in v for v in jinja), jinja


RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


def _waiver(directory: Path, expires: datetime, lifetime_days: int = 60) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "WVR-TEST-1.toml"
    path.write_text(
        'id = "WVR-TEST-1"\nowner = "alice@example.com"\napproved_by = "bob@example.com"\n'
        + f"approved_at = {(expires - timedelta(days=lifetime_days)).strftime(RFC3339)}\n"
        + 'reason = "no fixed release we can take yet"\n'
        + f"expires = {expires.strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
        + '[scope]\ngate = "pip-audit"\nfinding = "PYSEC-2019-217"\npackage = "jinja2"\n'
    )
    return directory


def test_waiver_suppresses_only_its_finding_when_unexpired(tmp_path: Path) -> None:
    root = make_project(tmp_path / "repo", pins=("jinja2==2.10",))
    waivers = load_waivers(_waiver(tmp_path / "waivers", datetime.now(UTC) + timedelta(days=30)))
    decision = decide(root, "pip-audit", waivers)
    assert decision["waivers_used"] == ["WVR-TEST-1"]
    assert not any("PYSEC-2019-217" in v for v in decision["violations"])
    # jinja2 2.10 has other advisories the waiver does not name: they still fail the gate.
    assert decision["result"] == "fail"


def test_expired_waiver_no_longer_suppresses_its_finding(tmp_path: Path) -> None:
    root = make_project(tmp_path / "repo", pins=("jinja2==2.10",))
    waivers = load_waivers(_waiver(tmp_path / "waivers", datetime.now(UTC) - timedelta(days=1)))
    decision = decide(root, "pip-audit", waivers)
    assert decision["result"] == "fail"
    assert decision["waivers_used"] == []
    assert decision["waivers_ignored"] == ["WVR-TEST-1"]
    assert any("PYSEC-2019-217" in v for v in decision["violations"])


def test_waiver_is_ignored_with_a_warning_when_it_runs_longer_than_90_days(
    tmp_path: Path,
) -> None:
    root = make_project(tmp_path / "repo", pins=("jinja2==2.10",))
    expires = datetime.now(UTC) + timedelta(days=30)
    waivers = load_waivers(_waiver(tmp_path / "waivers", expires, lifetime_days=91))
    decision = decide(root, "pip-audit", waivers)
    assert decision["waivers_used"] == []
    assert decision["waivers_ignored"] == ["WVR-TEST-1"]
    assert decision["warnings"] == [
        "waiver WVR-TEST-1 is ignored: it runs longer than 90 days from approval"
    ]


def test_waiver_warns_and_the_record_holds_it_whole_when_it_expires_within_14_days(
    tmp_path: Path,
) -> None:
    root = make_project(tmp_path / "repo", pins=("jinja2==2.10",))
    expires = datetime.now(UTC) + timedelta(days=5, hours=12)
    waivers = load_waivers(_waiver(tmp_path / "waivers", expires))
    ws = workspace(root)
    result = GATES["pip-audit"](ws)
    decision = decide_gate(ws, result, waivers)
    assert decision["waivers_used"] == ["WVR-TEST-1"]
    assert any(w.startswith("waiver WVR-TEST-1 expires in 6 days") for w in decision["warnings"]), (
        decision["warnings"]
    )
    record = gate_record(
        result,
        decision,
        commit="0" * 40,
        actor="ci-test",
        run_id="run_x",
        policy_digest="d",
        waivers=waivers,
    )
    (whole,) = record["details"]["waivers"]
    assert whole["owner"] == "alice@example.com"
    assert whole["approved_by"] == "bob@example.com"
    assert whole["reason"] == "no fixed release we can take yet"
    assert whole["scope"] == {"gate": "pip-audit", "finding": "PYSEC-2019-217", "package": "jinja2"}
    assert whole["expires"] == expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert record["details"]["warnings"] == decision["warnings"]


def test_pip_audit_gate_fails_when_the_advisory_snapshot_is_missing(project: Path) -> None:
    ws = workspace(project)
    ws = dataclasses.replace(ws, advisory_db=project / "no-db")
    decision = decide_gate(ws, GATES["pip-audit"](ws), [])
    assert decision["result"] == "fail"
    assert any("advisory database not found" in v for v in decision["violations"])


def test_locked_pins_reads_names_and_versions_when_hashes_follow() -> None:
    text = (
        "Jinja2==3.1.6 \\\n    --hash=sha256:ab\n"
        "uvicorn[standard]==0.32.0 ; python_version >= '3'\n"
    )
    assert locked_pins(text) == [
        {"name": "jinja2", "version": "3.1.6"},
        {"name": "uvicorn", "version": "0.32.0"},
    ]


def test_checkov_gate_passes_when_dockerfile_and_workflow_are_ours(project: Path) -> None:
    decision = decide(project, "checkov")
    assert decision["result"] == "pass", decision["violations"]


def test_checkov_gate_fails_when_the_dockerfile_runs_as_root(project: Path) -> None:
    (project / "Dockerfile").write_text(ROOT_DOCKERFILE)
    decision = decide(project, "checkov")
    assert decision["result"] == "fail"
    assert any("CKV_DOCKER_3" in v for v in decision["violations"]), decision["violations"]
    assert "CKV_DOCKER_3" in _sarif_rules(project, "checkov")


def test_opa_gate_passes_when_policies_and_tests_are_clean(project: Path) -> None:
    assert decide(project, "opa")["result"] == "pass"


def test_opa_gate_fails_when_a_rego_test_fails(project: Path) -> None:
    (project / "policies" / "pipeline" / "planted_test.rego").write_text(
        "package moneypath.pipeline.planted_test\n\nimport rego.v1\n\n"
        "test_planted_failure if {\n\t1 == 2\n}\n"
    )
    decision = decide(project, "opa")
    assert decision["result"] == "fail"
    assert any("test_planted_failure" in v for v in decision["violations"]), decision["violations"]


def test_pytest_gate_passes_when_tests_pass_with_coverage(project: Path) -> None:
    decision = decide(project, "pytest")
    assert decision["result"] == "pass", decision["violations"]


def test_pytest_gate_fails_when_a_test_fails(project: Path) -> None:
    (project / "tests" / "test_broken.py").write_text(
        "def test_planted_failure_when_run() -> None:\n    assert 1 == 2\n"
    )
    decision = decide(project, "pytest")
    assert decision["result"] == "fail"
    assert any("test_planted_failure_when_run" in v for v in decision["violations"])


def test_pytest_gate_ingests_reports_when_given_a_report_directory(project: Path) -> None:
    ws = workspace(project)
    GATES["pytest"](ws)  # produce junit.xml + coverage.json once
    ingested = dataclasses.replace(ws, pytest_reports=ws.reports_dir / "pytest")
    result = GATES["pytest"](ingested)
    assert result.facts["source"] == "ingested"
    assert result.facts["tests"] == 1
    assert decide_gate(ingested, result, [])["result"] == "pass"


def test_sbom_gate_lists_every_locked_component_when_run(project: Path) -> None:
    ws = workspace(project)
    result = GATES["sbom"](ws)
    assert result.facts["component_count"] == 1
    assert decide_gate(ws, result, [])["result"] == "pass"


def test_tools_come_from_the_pipeline_home_when_checking_a_copy(project: Path) -> None:
    ws = workspace(project)
    assert ws.opa == HOME / ".tools" / "bin" / "opa"
    assert ws.bin_dir == Path(sys.executable).parent


def test_static_gates_pass_when_the_tree_is_clean(project: Path) -> None:
    for gate in ("ruff", "mypy", "lint-imports"):
        assert decide(project, gate)["result"] == "pass", gate


def test_static_gates_fail_when_each_finds_its_planted_problem(project: Path) -> None:
    (project / "demo" / "typo.py").write_text(
        "def half(value: int) -> str:\n    return value // 2\n"
    )
    (project / "demo" / "leak.py").write_text("import os\nimport httpx\n")
    ruff, mypy, contracts = (decide(project, g) for g in ("ruff", "mypy", "lint-imports"))
    assert ruff["result"] == "fail"
    assert mypy["result"] == "fail"
    # The first findings themselves, not only counts; and ruff's as SARIF for code scanning.
    assert any(v.startswith("ruff F401 at ./demo/leak.py:1") for v in ruff["violations"]), ruff
    assert any(v.startswith("mypy demo/typo.py:2:") for v in mypy["violations"]), mypy
    assert "F401" in _sarif_rules(project, "ruff")
    assert contracts["result"] == "fail"
    assert any("import-linter: 1 contracts broken" in v for v in contracts["violations"])


def test_run_fails_without_evidence_and_records_an_unknown_gate_as_failed(
    project: Path, tmp_path: Path
) -> None:
    outcome = run_pipeline(
        workspace(project),
        ["bandit", "nope"],
        sink=None,
        waivers_dir=tmp_path / "none",
        commit="0" * 40,
        actor="ci-test",
        echo=False,
    )
    assert [g.decision["result"] for g in outcome.gates] == ["pass", "fail"]
    assert not outcome.passed
    assert "gate bandit: no evidence record was written" in outcome.decision["violations"]
    assert (
        "the run record was not written to the evidence service" in outcome.decision["violations"]
    )


def test_gate_fails_when_a_waiver_file_is_unreadable(project: Path, tmp_path: Path) -> None:
    (tmp_path / "waivers").mkdir()
    (tmp_path / "waivers" / "broken.toml").write_text("id = \n")
    outcome = run_pipeline(
        workspace(project),
        ["bandit"],
        sink=None,
        waivers_dir=tmp_path / "waivers",
        commit="0" * 40,
        actor="ci-test",
        echo=False,
    )
    assert outcome.gates[0].decision["result"] == "fail"
    assert any("waivers unreadable" in v for v in outcome.gates[0].decision["violations"])


def test_worktree_is_clean_only_when_nothing_is_uncommitted(project: Path) -> None:
    assert worktree_clean(project) is None
    commit_all(project)
    assert worktree_clean(project) is True
    (project / "demo" / "new.py").write_text("")
    assert worktree_clean(project) is False


def test_pip_audit_gate_fails_when_an_advisory_cannot_be_evaluated(
    project: Path, tmp_path: Path
) -> None:
    vulns = tmp_path / "vulns" / "jinja2"
    vulns.mkdir(parents=True)
    (vulns / "PYSEC-TEST-1.yaml").write_text(
        "id: PYSEC-TEST-1\naffected:\n- package: {name: jinja2, ecosystem: PyPI}\n"
        "  ranges:\n  - type: ECOSYSTEM\n    events:\n    - introduced: 'not a version'\n"
    )
    ws = dataclasses.replace(workspace(project), advisory_db=tmp_path / "vulns")
    result = GATES["pip-audit"](ws)
    assert result.facts["unchecked"][0]["name"] == "jinja2"
    decision = decide_gate(ws, result, [])
    assert decision["result"] == "fail"
    assert any("could not check jinja2" in v for v in decision["violations"])


def test_policy_knows_exactly_the_declared_gates_when_compared_with_the_package() -> None:
    from pipeline.policy import evaluate

    known = evaluate(
        HOME / ".tools" / "bin" / "opa",
        HOME / "policies" / "pipeline",
        "data.moneypath.pipeline.gates.known_gates",
        {},
    )
    assert set(known) == set(GATES)
    assert all(gate.name == name for name, gate in GATES.items())

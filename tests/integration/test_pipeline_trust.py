"""Who decides and who writes: a pull request reports with the base's policy and writes
nothing; only the protected branch's job holds the evidence credentials."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.runner import run_pipeline
from pipeline.workspace import HOME
from tests.support.pipeline_project import make_project, workspace

DANGER = (
    "import subprocess\n\n\ndef run(cmd: str) -> None:\n    subprocess.Popen(cmd, shell=True)\n"
)


def _workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((HOME / ".github/workflows/ci.yml").read_text())
    return loaded


def test_pull_request_job_holds_no_credentials_when_the_workflow_is_read() -> None:
    workflow = _workflow()
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as a boolean
    assert set(triggers) == {"push", "pull_request"}, "never pull_request_target"
    report = workflow["jobs"]["report"]
    assert report["if"] == "github.event_name == 'pull_request'"
    assert "environment" not in report
    assert "secrets." not in json.dumps(report)
    assert "PIPELINE_" not in json.dumps(report)
    run_step = next(s["run"] for s in report["steps"] if "pipeline run" in s.get("run", ""))
    assert "--report-only" in run_step
    assert "--policy-dir .trusted/policies/pipeline" in run_step
    trusted = next(s for s in report["steps"] if s.get("with", {}).get("path") == ".trusted")
    assert trusted["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"


def test_only_the_protected_branch_job_writes_evidence_when_the_workflow_is_read() -> None:
    jobs = _workflow()["jobs"]
    evidence = jobs["evidence"]
    assert evidence["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert evidence["environment"] == "evidence"
    runs = [s["run"] for s in evidence["steps"] if "pipeline run" in s.get("run", "")]
    assert runs
    assert all("--report-only" not in r for r in runs)
    with_secrets = [name for name, job in jobs.items() if "secrets." in json.dumps(job)]
    assert with_secrets == ["evidence"]


def test_codeowners_guard_the_pipeline_policy_when_it_changes() -> None:
    owners = (HOME / ".github" / "CODEOWNERS").read_text().splitlines()
    rules = {
        line.split()[0]: line.split()[1:] for line in owners if line.strip() and line[0] != "#"
    }
    assert rules["/policies/pipeline/"], "a change to the gate policy needs its owners"
    assert rules["/.github/CODEOWNERS"], "and so does a change to who owns it"


def test_report_only_run_passes_and_writes_nothing_when_the_gates_pass(tmp_path: Path) -> None:
    ws = workspace(make_project(tmp_path / "repo"))
    outcome = run_pipeline(
        ws,
        ["bandit"],
        sink=None,
        waivers_dir=tmp_path / "none",
        commit="0" * 40,
        actor="ci-test",
        echo=False,
        report_only=True,
    )
    assert outcome.passed, outcome.decision
    assert outcome.evidence_id is None
    assert outcome.gates[0].evidence_id is None
    assert json.loads((ws.reports_dir / "run.json").read_text())["run"]["details"]["mode"] == (
        "report-only"
    )
    with pytest.raises(ValueError, match="writes no evidence"):
        run_pipeline(
            ws,
            ["bandit"],
            sink=object(),  # type: ignore[arg-type]
            waivers_dir=tmp_path / "none",
            commit="0" * 40,
            actor="ci-test",
            report_only=True,
        )


def _cli(root: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    argv = [sys.executable, "-m", "pipeline", "run", "--report-only", "--gates", "bandit"]
    argv += ["--root", str(root), "--packages", "demo", "--waivers", str(tmp_path / "none")]
    return subprocess.run(
        [*argv, "--reports", str(tmp_path / "reports"), *extra],
        cwd=HOME,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_change_cannot_relax_its_own_gate_policy_when_the_base_policy_decides(
    tmp_path: Path,
) -> None:
    root = make_project(tmp_path / "repo")
    (root / "demo" / "danger.py").write_text(DANGER)
    # The change under test rewrites its own policy to pass everything.
    own = root / "policies" / "pipeline" / "gates.rego"
    own.write_text(own.read_text().replace('default result := "fail"', 'default result := "pass"'))
    own.write_text(own.read_text().replace('result := "pass" if count(violations) == 0', ""))
    trusted = tmp_path / "trusted"
    shutil.copytree(HOME / "policies" / "pipeline", trusted)
    run = _cli(root, tmp_path, "--policy-dir", str(trusted))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "B602" in run.stdout
    assert "evidence=report-only" in run.stdout


def test_run_is_judged_by_the_policy_dir_when_one_is_given(tmp_path: Path) -> None:
    root = make_project(tmp_path / "repo")
    trusted = tmp_path / "trusted"
    shutil.copytree(HOME / "policies" / "pipeline", trusted)
    rules = trusted / "gates.rego"
    rules.write_text(
        rules.read_text().replace('"ruff", "mypy", "lint-imports", "bandit",', '"ruff",')
    )
    assert _cli(root, tmp_path).returncode == 0
    judged = _cli(root, tmp_path, "--policy-dir", str(trusted))
    assert judged.returncode == 1
    assert 'unknown gate "bandit"' in judged.stdout


def test_workflow_uploads_sarif_and_keeps_the_evidence_bundle_when_read() -> None:
    jobs = _workflow()["jobs"]
    for name in ("report", "evidence"):
        uses = {s.get("uses", "").split("@")[0]: s for s in jobs[name]["steps"]}
        sarif = uses["github/codeql-action/upload-sarif"]
        assert sarif["with"]["sarif_file"] == "reports/pipeline/sarif"
        assert sarif["if"] == "always()"
        assert jobs[name]["permissions"]["security-events"] == "write"
    kept = {s.get("uses", "").split("@")[0]: s for s in jobs["evidence"]["steps"]}
    assert kept["actions/upload-artifact"]["with"]["path"] == "reports/pipeline/evidence-bundle"
    for job in jobs.values():
        for step in job["steps"]:
            if "uses" in step:
                ref = step["uses"].split("@")[1]
                assert len(ref) == 40, f"{step['uses']} is not pinned to a commit"

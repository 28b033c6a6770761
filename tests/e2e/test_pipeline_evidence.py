"""The pipeline writes signed evidence to the real evidence service and promotes on it.

The API and the evidence service run as uvicorn processes (`live_stack`); the pipeline
authenticates as a service client created through the identity API, exactly as in CI.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from app.entrypoints.devstack import Stack
from app.entrypoints.launchers.processes import free_port
from pipeline.bundle import export as export_bundle
from pipeline.bundle import verify as verify_bundle
from pipeline.evidence_client import EvidenceClient
from pipeline.gates import GATES
from pipeline.promotion import promote, verify_promotion
from pipeline.runner import run_pipeline
from pipeline.workspace import HOME
from tests.support.api_client import ClientFactory
from tests.support.pipeline_project import ROOT_DOCKERFILE, commit_all, make_project, workspace

ALL_GATES = list(GATES)


def _commit() -> str:
    return secrets.token_hex(20)


@pytest.fixture
def evidence_client(live_stack: Stack, client_factory: ClientFactory) -> Iterator[EvidenceClient]:
    with httpx.Client(base_url=live_stack.api_url, timeout=10) as http:
        ci = client_factory(
            scopes=["evidence:write", "evidence:read"], name="ci-pipeline", http=http
        )
        client = EvidenceClient(
            evidence_url=live_stack.evidence_url,
            token_url=live_stack.api_url,
            client_id=ci.client_id,
            client_secret=ci.client_secret,
            key_id=ci.key_id,
            private_key=ci.private_key,
        )
        yield client
        client.close()


def _record(client: EvidenceClient, record_id: str) -> dict[str, Any]:
    record: dict[str, Any] = client.get(f"/v1/evidence/{record_id}")["record"]
    return record


def test_gate_records_say_fail_with_the_finding_when_problems_are_planted(
    tmp_path: Path, evidence_client: EvidenceClient
) -> None:
    root = make_project(tmp_path / "repo", pins=("jinja2==2.10",))
    (root / "demo" / "danger.py").write_text(
        "import subprocess\n\n\ndef run(cmd: str) -> None:\n    subprocess.Popen(cmd, shell=True)\n"
    )
    (root / "Dockerfile").write_text(ROOT_DOCKERFILE)
    (root / "policies" / "pipeline" / "planted_test.rego").write_text(
        "package moneypath.pipeline.planted_test\n\nimport rego.v1\n\n"
        "test_planted_failure if {\n\t1 == 2\n}\n"
    )
    (root / "tests" / "test_broken.py").write_text(
        "def test_planted_failure_when_run() -> None:\n    assert 1 == 2\n"
    )
    commit = _commit()
    outcome = run_pipeline(
        workspace(root),
        ["bandit", "pip-audit", "checkov", "opa", "pytest"],
        sink=evidence_client,
        waivers_dir=tmp_path / "no-waivers",
        commit=commit,
        actor="ci-test",
        echo=False,
    )
    assert not outcome.passed
    expected = {
        "bandit": "B602",
        "pip-audit": "PYSEC-2019-217",
        "checkov": "CKV_DOCKER_3",
        "opa": "test_planted_failure",
        "pytest": "test_planted_failure_when_run",
    }
    for gate in outcome.gates:
        assert gate.evidence_id, gate.evidence_error
        record = _record(evidence_client, gate.evidence_id)
        assert record["result"] == "fail"
        assert record["subject"]["commit"] == commit
        assert record["details"]["gate"] == gate.result.gate
        assert any(expected[gate.result.gate] in f for f in record["details"]["findings"])
        assert record["tool"]["version"] not in ("", "unavailable")
        assert record["attachments"], "the report is stored as an attachment"
        stored = evidence_client.get(f"/v1/attachments/{record['attachments'][0]['digest']}")
        assert stored["digest"] == record["attachments"][0]["digest"]
    assert outcome.evidence_id
    run = _record(evidence_client, outcome.evidence_id)
    assert run["type"] == "ci.run"
    assert run["result"] == "fail"
    assert set(run["details"]["gate_records"]) == set(expected)
    listed = evidence_client.list_records({"commit": commit, "result": "fail"})
    assert len(listed) == len(expected) + 1


def test_run_fails_when_the_evidence_service_is_down(
    tmp_path: Path, evidence_client: EvidenceClient, live_stack: Stack
) -> None:
    down = EvidenceClient(
        evidence_url=f"http://127.0.0.1:{free_port()}",
        token_url=live_stack.api_url,
        client_id=evidence_client._client_id,
        client_secret=evidence_client._client_secret,
        key_id=evidence_client._key_id,
        private_key=evidence_client._private_key,
    )
    try:
        outcome = run_pipeline(
            workspace(make_project(tmp_path / "repo")),
            ["bandit"],
            sink=down,
            waivers_dir=tmp_path / "no-waivers",
            commit=_commit(),
            actor="ci-test",
            echo=False,
        )
    finally:
        down.close()
    assert outcome.gates[0].decision["result"] == "pass"
    assert outcome.gates[0].evidence_id is None
    assert "unreachable" in (outcome.gates[0].evidence_error or "")
    assert not outcome.passed
    assert "gate bandit: no evidence record was written" in outcome.decision["violations"]


def _use_pipeline_key(monkeypatch: pytest.MonkeyPatch, client: EvidenceClient) -> None:
    """The build gate signs with the same key the client authenticates with, as in CI."""
    pem = client._private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    monkeypatch.setenv("PIPELINE_KEY_ID", client._key_id)
    monkeypatch.setenv("PIPELINE_SIGNING_KEY_PEM", pem)
    monkeypatch.delenv("PIPELINE_SIGNING_KEY", raising=False)


def test_promotion_binds_the_built_artifact_and_records_refusals_when_asked(
    tmp_path: Path, evidence_client: EvidenceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_pipeline_key(monkeypatch, evidence_client)
    root = make_project(tmp_path / "repo")
    commit = commit_all(root)
    policy = {"policy_dir": HOME / "policies" / "pipeline", "opa": HOME / ".tools" / "bin" / "opa"}

    def ask(digest: str, at: str = commit) -> dict[str, Any]:
        return promote(
            evidence_url=None,
            commit=at,
            head_commit=commit,
            tree_clean=True,
            artifact_digest=digest,
            environment="production",
            actor="carol",
            pipeline_client_id=evidence_client._client_id,
            client=evidence_client,
            **policy,
        )

    def run(gates: list[str], scope: dict[str, Any]) -> Any:
        return run_pipeline(
            workspace(root),
            gates,
            sink=evidence_client,
            waivers_dir=tmp_path / "no-waivers",
            commit=commit,
            actor="ci-test",
            echo=False,
            scope=scope,
        )

    unknown = "sha256:" + secrets.token_hex(32)
    refused = ask(unknown)
    assert not refused["allow"]
    recorded = _record(evidence_client, refused["evidence_id"])
    assert (recorded["type"], recorded["result"]) == ("ci.promotion", "fail")
    assert recorded["details"]["reasons"] == refused["reasons"]

    # A run narrowed by a flag cannot back a promotion, even when it passes.
    narrowed = run(["bandit"], {"default": False, "narrowed_by": ["--gates"]})
    assert narrowed.passed
    refused = ask(unknown)
    assert any("scope was narrowed by --gates" in r for r in refused["reasons"]), refused

    outcome = run(ALL_GATES, {"default": True, "narrowed_by": []})
    assert outcome.passed, [g.decision["violations"] for g in outcome.gates]
    build = next(g for g in outcome.gates if g.result.gate == "build")
    digest = build.result.outputs["image-context"]

    refused = ask(unknown)
    assert not refused["allow"]
    assert any(f"names no artifact {unknown}" in r for r in refused["reasons"]), refused
    assert not ask(digest, at=_commit())["allow"], "a commit that is not HEAD"

    allowed = ask(digest)
    assert allowed["allow"], allowed["reasons"]
    record = _record(evidence_client, allowed["evidence_id"])
    assert (record["type"], record["result"]) == ("ci.promotion", "pass")
    assert record["actor"] == "carol"
    assert record["subject"]["artifacts"] == [{"name": "image:production", "digest": digest}]
    assert record["details"]["run_records"] == [outcome.evidence_id]

    answer = verify_promotion(evidence_client, digest, "production")
    assert answer["allow"], answer["reasons"]
    assert [p["type"] for p in answer["proofs"]] == ["ci.promotion", "ci.run", "ci.gate"]
    assert all(p["inclusion_proof"] for p in answer["proofs"])
    assert not verify_promotion(evidence_client, unknown)["allow"]


def test_cli_runs_with_evidence_and_refuses_promotion_without_it(
    tmp_path: Path, evidence_client: EvidenceClient, live_stack: Stack
) -> None:
    key_file = tmp_path / "pipeline-key.pem"
    key_file.write_bytes(
        evidence_client._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    env = {
        **os.environ,
        "PIPELINE_CLIENT_ID": evidence_client._client_id,
        "PIPELINE_CLIENT_SECRET": evidence_client._client_secret,
        "PIPELINE_KEY_ID": evidence_client._key_id,
        "PIPELINE_SIGNING_KEY": str(key_file),
        "PIPELINE_TOKEN_URL": live_stack.api_url,
        "EVIDENCE_URL": live_stack.evidence_url,
    }
    root = make_project(tmp_path / "repo")
    commit = commit_all(root)
    cli = [sys.executable, "-m", "pipeline"]
    run = subprocess.run(
        [
            *cli,
            "run",
            "--gates",
            "bandit",
            "opa",
            "--root",
            str(root),
            "--reports",
            str(tmp_path / "reports"),
            "--waivers",
            str(tmp_path / "none"),
            "--packages",
            "demo",
        ],
        cwd=HOME,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "evidence=evd_" in run.stdout
    promote_cli = subprocess.run(
        [
            *cli,
            "promote",
            "--artifact-digest",
            "sha256:" + "b" * 64,
            "--environment",
            "production",
            "--root",
            str(root),
        ],
        cwd=HOME,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Only two gates ran for this commit: no passing run covers every required gate.
    assert promote_cli.returncode == 1
    assert "promotion refused" in promote_cli.stdout
    assert commit in promote_cli.stdout


def test_bundle_verifies_offline_and_a_tampered_copy_fails_when_exported_after_a_run(
    tmp_path: Path, evidence_client: EvidenceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path / "repo")
    (root / "demo" / "danger.py").write_text(
        "import subprocess\n\n\ndef run(cmd: str) -> None:\n    subprocess.Popen(cmd, shell=True)\n"
    )
    evidence_client.appended.clear()
    outcome = run_pipeline(
        workspace(root),
        ["bandit", "opa"],
        sink=evidence_client,
        waivers_dir=tmp_path / "no-waivers",
        commit=_commit(),
        actor="ci-test",
        echo=False,
    )
    assert not outcome.passed
    folder = tmp_path / "bundle"
    bundle_file = export_bundle(evidence_client, evidence_client.appended, folder)
    assert verify_bundle(folder) == []
    monkeypatch.chdir(tmp_path)
    assert verify_bundle(Path("bundle")) == [], "a relative folder, as .ci/run passes it"
    bundle = json.loads(bundle_file.read_text())
    ids = {entry["record"]["id"] for entry in bundle["records"]}
    assert {g.evidence_id for g in outcome.gates} | {outcome.evidence_id} <= ids

    # A failing gate rewritten as passing no longer matches its proven leaf.
    tampered = tmp_path / "tampered"
    shutil.copytree(folder, tampered)
    for entry in bundle["records"]:
        if entry["record"]["result"] == "fail":
            entry["record"]["result"] = "pass"
    (tampered / "bundle.json").write_text(json.dumps(bundle))
    assert verify_bundle(tampered), "a record rewritten from fail to pass must not verify"

    # A report swapped for another no longer matches the digest its record names.
    swapped = tmp_path / "swapped"
    shutil.copytree(folder, swapped)
    report = next((swapped / "attachments" / "sha256").iterdir())
    report.write_bytes(report.read_bytes() + b" ")
    assert any("does not match its digest" in p for p in verify_bundle(swapped))

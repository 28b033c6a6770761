"""The secrets, licences and migrations gates: clean passes, planted failures fail.

Each runs the real tool (detect-secrets, pip-licenses, a scratch PostgreSQL from pgserver)
on a small temporary project, and the real OPA decides through `policies/pipeline/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.gates import GATES
from pipeline.runner import decide_gate
from tests.support.pipeline_project import FAKE_HASH, make_project, workspace

# The shape of an AWS access key id, made up: AKIA followed by 16 upper-case characters.
PLANTED_AWS_KEY = "AKIA" + "Q7ZNR4WX2PLM8KTB"


def decide(root: Path, gate: str) -> dict[str, Any]:
    ws = workspace(root)
    return decide_gate(ws, GATES[gate](ws), [])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "repo")


def test_secrets_gate_passes_when_only_baseline_findings_exist(project: Path) -> None:
    decision = decide(project, "secrets")
    assert decision["result"] == "pass", decision["violations"]


def test_secrets_gate_fails_when_an_aws_key_is_planted(project: Path) -> None:
    (project / "demo" / "settings.py").write_text(f'AWS_ACCESS_KEY_ID = "{PLANTED_AWS_KEY}"\n')
    decision = decide(project, "secrets")
    assert decision["result"] == "fail"
    assert any(
        "AWS Access Key" in v and "demo/settings.py:1" in v for v in decision["violations"]
    ), decision["violations"]


def test_licences_gate_passes_when_runtime_dependencies_are_permissive(project: Path) -> None:
    decision = decide(project, "licences")
    assert decision["result"] == "pass", decision["violations"]


def test_licences_gate_fails_when_a_gpl_only_dependency_is_planted(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An installed distribution that declares GPL-3.0-only, pinned in the runtime lock.
    site = tmp_path / "site"
    info = site / "copyleft_only-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.4\nName: copyleft-only\nVersion: 1.0\n"
        "License-Expression: GPL-3.0-only\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(site))
    with (project / "requirements-runtime.lock").open("a") as lock:
        lock.write(f"copyleft-only==1.0 \\\n    --hash={FAKE_HASH}\n")
    decision = decide(project, "licences")
    assert decision["result"] == "fail"
    assert decision["violations"] == [
        'licence "GPL-3.0-only" of copyleft-only 1.0 is not on the allow-list'
    ]


def test_migrations_gate_passes_when_the_schema_matches_the_expected_one(project: Path) -> None:
    decision = decide(project, "migrations")
    assert decision["result"] == "pass", decision["violations"]


def test_migrations_gate_fails_when_a_migration_drifts_from_the_expected_schema(
    project: Path,
) -> None:
    migration = project / "schema_demo.py"
    migration.write_text(migration.read_text().replace("name text NOT NULL", "name text"))
    decision = decide(project, "migrations")
    assert decision["result"] == "fail"
    assert (
        "schema drift: demo: missing column demo.items.name text not null"
        in (decision["violations"])
    )
    assert "schema drift: demo: unexpected column demo.items.name text" in decision["violations"]


def test_migrations_gate_fails_when_a_migration_cannot_run(project: Path) -> None:
    migration = project / "schema_demo.py"
    migration.write_text(migration.read_text().replace("CREATE TABLE", "CREATE TABEL"))
    decision = decide(project, "migrations")
    assert decision["result"] == "fail"
    assert any("migrating empty databases to head failed" in v for v in decision["violations"])

"""`make loadtest`'s runner against a live stack: it passes a loose SLO and fails a tight
one, keeps Locust's HTML report, and writes an `ops.loadtest` evidence record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.entrypoints.devstack import Stack
from app.entrypoints.drills.harness import create_client
from app.entrypoints.operator_call import write_credentials
from app.platform.client_credentials import private_pem


def _credentials(stack: Stack, folder: Path, name: str, scopes: list[str]) -> Path:
    made = create_client(stack, name, scopes)
    key = folder / f"{name}.pem"
    key.write_bytes(private_pem(made.private_key))
    out = folder / f"{name}.json"
    write_credentials(
        out,
        api_url=stack.api_url,
        client_id=made.client_id,
        client_secret=made.client_secret,
        key_id=made.key_id,
        key_path=key,
    )
    return out


@pytest.fixture(scope="module")
def target_env(live_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("loadtest-credentials")
    return {
        **os.environ,
        "MP_API_URL": live_stack.api_url,
        "MP_CREDENTIALS": str(
            _credentials(live_stack, folder, "lt", ["ledger:write", "ledger:read", "kyc:write"])
        ),
        "MP_EVIDENCE_URL": live_stack.evidence_url,
        "MP_EVIDENCE_CREDENTIALS": str(
            _credentials(live_stack, folder, "lt-evidence", ["evidence:write"])
        ),
    }


def _run(
    env: dict[str, str], slo: Path, report_dir: Path, repo_root: Path
) -> subprocess.CompletedProcess[str]:
    bounds = ["--users", "3", "--run-time", "8s"]
    return subprocess.run(
        [
            sys.executable,
            "loadtests/run.py",
            *bounds,
            "--slo",
            str(slo),
            "--report-dir",
            str(report_dir),
        ],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_loadtest_fails_with_exit_1_when_an_slo_is_too_tight(
    target_env: dict[str, str], tmp_path: Path, repo_root: Path
) -> None:
    slo = yaml.safe_load((repo_root / "loadtests" / "slo.yml").read_text())
    slo["endpoints"]["POST /v1/ledger/transactions"] = {"p95_ms": 1, "p99_ms": 1}
    tight = tmp_path / "tight.yml"
    tight.write_text(yaml.safe_dump(slo))

    result = _run(target_env, tight, tmp_path / "report", repo_root)

    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "loadtest against tight.yml: FAIL" in result.stdout
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    missed = [o["objective"] for o in summary["objectives"] if not o["met"]]
    assert "POST /v1/ledger/transactions p95_ms" in missed
    assert (tmp_path / "report" / "locust.html").stat().st_size > 0
    assert summary["evidence_id"].startswith("evd_")


def test_loadtest_passes_and_covers_the_mix_when_slos_are_met(
    target_env: dict[str, str], tmp_path: Path, repo_root: Path
) -> None:
    slo = yaml.safe_load((repo_root / "loadtests" / "slo.yml").read_text())
    # Eight seconds with three users on a shared machine: hold the percentiles loosely and
    # drop the endpoints too rare to be sure of a sample; the mix must still run.
    slo["min_throughput_rps"] = 1
    slo["endpoints"] = {
        name: {"p95_ms": 10_000, "p99_ms": 20_000}
        for name in ("POST /v1/ledger/transactions", "GET /v1/ledger/accounts/{id}")
    }
    loose = tmp_path / "loose.yml"
    loose.write_text(yaml.safe_dump(slo))

    result = _run(target_env, loose, tmp_path / "report", repo_root)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["passed"] is True
    assert summary["failures"] == 0
    assert {"POST /v1/oauth/token", "POST /v1/ledger/transactions"} <= set(summary["endpoints"])
    assert summary["evidence_id"].startswith("evd_")

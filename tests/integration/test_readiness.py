"""Readiness and operational endpoints against the real services."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate as validate_openapi
from starlette.testclient import TestClient

from app.entrypoints.devstack import Ports, Stack
from app.entrypoints.launchers.opa import OPA_GC_PERCENT, opa_environment
from app.entrypoints.launchers.processes import StackError, free_port


def test_readyz_reports_every_dependency_ok_when_all_are_up(api: TestClient) -> None:
    response = api.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"db": "ok", "opa": "ok", "vault": "ok"}


def test_healthz_is_alive(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}


def test_openapi_document_is_valid_openapi_3_1(api: TestClient) -> None:
    document = api.get("/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    validate_openapi(document)


def test_metrics_are_prometheus_text(api: TestClient) -> None:
    api.get("/healthz")
    response = api.get("/metrics")
    assert response.status_code == 200
    assert "moneypath_http_requests_total" in response.text or "python_info" in response.text


def test_unknown_path_is_problem_json_not_found(api: TestClient) -> None:
    response = api.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "not_found"


def test_request_id_is_echoed_or_generated(api: TestClient) -> None:
    assert (
        api.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    generated = api.get("/healthz", headers={"X-Request-Id": "bad id\n"}).headers["x-request-id"]
    assert generated.startswith("req_")


def test_readyz_names_vault_when_openbao_is_stopped(tmp_path: Path) -> None:
    stack = Stack(root=tmp_path / "s", ports=Ports.free(), watch_policies=False)
    with stack.running(apps=True):
        assert httpx.get(f"{stack.api_url}/readyz", timeout=5).status_code == 200
        stack.stop("openbao")
        response = httpx.get(f"{stack.api_url}/readyz", timeout=10)
        assert response.status_code == 503
        assert response.json()["down"] == ["vault"]


def test_start_fails_fast_with_one_line_cause_when_database_url_port_is_closed(
    tmp_path: Path, repo_root: Path
) -> None:
    closed = free_port()
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "app.entrypoints.cli", "up", "--data-dir", str(tmp_path)],
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed}/x",
            "VAULT_PORT": str(free_port()),
            "OPA_PORT": str(free_port()),
            "API_PORT": str(free_port()),
            "EVIDENCE_PORT": str(free_port()),
            "SIM_PORT": str(free_port()),
        },
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    elapsed_s = time.monotonic() - started
    assert result.returncode == 1
    assert elapsed_s < 10
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "database unreachable" in lines[0]


def test_start_fails_fast_when_policies_directory_is_unreadable(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    policies.chmod(0o000)
    stack = Stack(root=tmp_path / "s", ports=Ports.free(), policies_dir=policies)
    started = time.monotonic()
    try:
        with pytest.raises(StackError, match="not readable"):
            stack.start_opa()
    finally:
        policies.chmod(0o755)
        stack.stop_all()
    assert time.monotonic() - started < 10


def test_opa_reloads_policies_when_a_file_changes_in_dev(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "probe.rego").write_text("package probe\n\nanswer := 1\n")
    stack = Stack(root=tmp_path / "s", ports=Ports.free(), policies_dir=policies)
    try:
        stack.start_opa()
        url = f"{stack.opa_url}/v1/data/probe/answer"
        assert httpx.get(url, timeout=5).json()["result"] == 1
        (policies / "probe.rego").write_text("package probe\n\nanswer := 2\n")
        deadline = time.monotonic() + 15
        result = None
        while time.monotonic() < deadline:
            result = httpx.get(url, timeout=5).json().get("result")
            if result == 2:
                break
            time.sleep(0.2)
        assert result == 2
    finally:
        stack.stop_all()


def test_opa_runs_with_a_larger_gc_target_when_the_operator_sets_none(stack: Stack) -> None:
    """OPA's Go collector runs at GOGC=400 (a quarter less CPU per decision, issue 16)."""
    opa = stack.group.processes["opa"]
    environ = Path(f"/proc/{opa.pid}/environ").read_bytes().split(b"\0")
    assert f"GOGC={OPA_GC_PERCENT}".encode() in environ


def test_opa_keeps_the_operators_gc_target_when_one_is_set() -> None:
    assert opa_environment({"GOGC": "150", "PATH": "/bin"}) == {"GOGC": "150", "PATH": "/bin"}
    assert opa_environment({"PATH": "/bin"})["GOGC"] == OPA_GC_PERCENT

"""pip-audit over requirements.lock: offline against the shipped PyPA snapshot (served by
`pipeline.osv_server`), or against pip-audit's own online OSV service."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from pipeline.advisories import AdvisoryDatabase, AdvisoryDatabaseError
from pipeline.advisory_snapshot import describe as describe_snapshot
from pipeline.gates.step import (
    Gate,
    GateStep,
    Observation,
    Tool,
    dist_version,
    load_json,
    locked_pins,
    now,
    tool_error,
)
from pipeline.osv_server import serving
from pipeline.workspace import ToolRun, Workspace, config_digest, run_tool


def _argv(ws: Workspace, report: Path, cache: str, osv_url: str | None) -> list[str]:
    service = ["--vulnerability-service", "osv"] + (["--osv-url", osv_url] if osv_url else [])
    return [
        ws.tool("pip-audit"),
        "--requirement",
        str(ws.root / "requirements.lock"),
        "--disable-pip",
        "--strict",
        *service,
        "--format",
        "json",
        "--output",
        str(report),
        "--progress-spinner",
        "off",
        "--cache-dir",
        cache,
    ]


def _dependencies(facts: dict[str, Any], report: Path, run: ToolRun) -> None:
    parsed = load_json(report)
    if parsed is None:
        facts["tool_error"] = tool_error(run)
    deps = (parsed or {}).get("dependencies", [])
    facts["dependencies"] = [
        {
            "name": canonicalize_name(d.get("name", "")),
            "version": d.get("version"),
            "vulns": [
                {
                    "id": v.get("id"),
                    "aliases": v.get("aliases", []),
                    "fix_versions": v.get("fix_versions", []),
                }
                for v in d.get("vulns", [])
            ],
        }
        for d in deps
        if "skip_reason" not in d
    ]
    facts["skipped"] = [
        {"name": d.get("name"), "reason": d.get("skip_reason")} for d in deps if "skip_reason" in d
    ]
    facts["exit_code"] = run.exit_code


def observe(step: GateStep) -> Observation:
    ws = step.ws
    lock = ws.root / "requirements.lock"
    report = step.fresh("pip-audit.json")
    facts: dict[str, Any] = {"locked": locked_pins(lock.read_text()) if lock.is_file() else []}
    argv: list[str] = []
    volatile = step.volatile()
    database = None
    if ws.advisory_source == "online":
        facts["advisory_db"] = {
            "source": "online",
            "service": "osv",
            "snapshot_date": None,
            "sha256": None,
            "queried_at": now().isoformat().replace("+00:00", "Z"),
        }
        with tempfile.TemporaryDirectory() as cache:
            argv = _argv(ws, report, cache, None)
            volatile[cache] = "<cache>"
            _dependencies(facts, report, run_tool(argv, cwd=ws.root, timeout_s=ws.timeout_s))
    else:
        try:
            database = AdvisoryDatabase.load(ws.advisory_db)
        except AdvisoryDatabaseError as error:
            facts["tool_error"] = str(error)
            facts["advisory_db"] = {"source": "snapshot", "snapshot_date": None, "sha256": None}
    if database is not None:
        facts["advisory_count"] = database.advisory_count
        facts["advisory_db"] = describe_snapshot(ws.advisory_db, database.tree_sha256)
        with tempfile.TemporaryDirectory() as cache, serving(database) as (url, log):
            argv = _argv(ws, report, cache, url)
            volatile.update({url: "<osv-url>", cache: "<cache>"})
            run = run_tool(argv, cwd=ws.root, timeout_s=ws.timeout_s)
            facts["unchecked"] = list(log.unchecked)
            facts["queried"] = [
                {"name": canonicalize_name(n), "version": v} for n, v in log.queried
            ]
        _dependencies(facts, report, run)
    counts = {
        "vulnerabilities": sum(len(d["vulns"]) for d in facts.get("dependencies", [])),
        "dependencies": len(facts.get("dependencies", [])),
        "unchecked": len(facts.get("unchecked", [])) + len(facts.get("skipped", [])),
    }
    step.attach(report, "application/json")
    digest = config_digest(argv, [], ws.root, volatile)
    return Observation(Tool("pip-audit", dist_version("pip-audit"), digest), facts, counts)


GATE = Gate("pip-audit", ("SOC2:CC7.1", "PCI-DSS-4.0.1:6.3.3"), observe)

"""bandit over the source packages: security issues by severity and confidence."""

from __future__ import annotations

from typing import Any

from pipeline.gates.step import (
    MAX_FINDINGS_IN_FACTS,
    Gate,
    GateStep,
    Observation,
    Tool,
    dist_version,
    load_json,
    tool_error,
)
from pipeline.workspace import config_digest, run_tool


def observe(step: GateStep) -> Observation:
    ws = step.ws
    report = step.fresh("bandit.json")
    argv = [ws.tool("bandit"), "-r", *ws.source_packages, "-f", "json", "-o", str(report), "-q"]
    run = run_tool(argv, cwd=ws.root, timeout_s=ws.timeout_s)
    parsed = load_json(report)
    issues = [
        {
            "test_id": i.get("test_id"),
            "severity": i.get("issue_severity"),
            "confidence": i.get("issue_confidence"),
            "file": i.get("filename"),
            "line": i.get("line_number"),
            "text": i.get("issue_text"),
        }
        for i in (parsed or {}).get("results", [])
    ]
    facts: dict[str, Any] = {
        "issues": issues[:MAX_FINDINGS_IN_FACTS],
        "scan_errors": (parsed or {}).get("errors", [])[:MAX_FINDINGS_IN_FACTS],
        "exit_code": run.exit_code,
    }
    if parsed is None:
        facts["tool_error"] = tool_error(run)
    counts = {
        sev.lower(): sum(1 for i in issues if i["severity"] == sev)
        for sev in ("HIGH", "MEDIUM", "LOW")
    }
    step.attach(report, "application/json")
    # The same scan as SARIF 2.1.0 for code scanning (bandit[sarif] writes it itself).
    sarif = step.fresh("bandit.sarif")
    sarif_argv = [*argv[: argv.index("-f")], "-f", "sarif", "-o", str(sarif), "-q"]
    run_tool(sarif_argv, cwd=ws.root, timeout_s=ws.timeout_s)
    facts["sarif_version"] = step.sarif(sarif)
    digest = config_digest(argv, [], ws.root, step.volatile())
    return Observation(Tool("bandit", dist_version("bandit"), digest), facts, counts)


GATE = Gate("bandit", ("SOC2:CC7.1", "PCI-DSS-4.0.1:6.2.4"), observe)

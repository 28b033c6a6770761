"""ruff: lint violations (`ruff check`) and unformatted files (`ruff format --check`)."""

from __future__ import annotations

import json
import re
from typing import Any

from pipeline.gates.step import (
    MAX_FINDINGS_IN_FACTS,
    Gate,
    GateStep,
    Observation,
    Tool,
    dist_version,
    tool_error,
)
from pipeline.workspace import config_digest, run_tool


def observe(step: GateStep) -> Observation:
    ws = step.ws
    check_argv = [ws.tool("ruff"), "check", "--no-cache", "--output-format", "json", "."]
    format_argv = [ws.tool("ruff"), "format", "--no-cache", "--check", "."]
    check = run_tool(check_argv, cwd=ws.root, timeout_s=ws.timeout_s)
    fmt = run_tool(format_argv, cwd=ws.root, timeout_s=ws.timeout_s)
    parsed = json.loads(check.stdout) if check.stdout.strip().startswith("[") else None
    unformatted = re.findall(r"^Would reformat: (.+)$", fmt.stdout, re.MULTILINE)
    facts: dict[str, Any] = {
        "violations": [
            {
                "code": v.get("code"),
                "file": v.get("filename", "").replace(str(ws.root), "."),
                "line": (v.get("location") or {}).get("row"),
                "message": v.get("message"),
            }
            for v in (parsed or [])[:MAX_FINDINGS_IN_FACTS]
        ],
        "violation_count": len(parsed or []),
        "unformatted": unformatted[:MAX_FINDINGS_IN_FACTS],
        "format_exit_code": fmt.exit_code,
    }
    if parsed is None:
        facts["tool_error"] = tool_error(check)
    elif fmt.exit_code not in (0, 1):
        facts["tool_error"] = tool_error(fmt)
    step.attach(
        step.write("ruff.json", json.dumps({"check": parsed, "format": fmt.stdout})),
        "application/json",
    )
    # The same findings as SARIF 2.1.0 for code scanning (ruff writes it itself).
    sarif = run_tool([*check_argv[:3], "--output-format", "sarif", "."], cwd=ws.root, timeout_s=600)
    facts["sarif_version"] = step.sarif(step.write("ruff.sarif", sarif.stdout))
    digest = config_digest(
        check_argv + format_argv, [ws.root / "pyproject.toml"], ws.root, step.volatile()
    )
    return Observation(
        Tool("ruff", dist_version("ruff"), digest),
        facts,
        {"violations": len(parsed or []), "unformatted": len(unformatted)},
    )


GATE = Gate("ruff", ("SOC2:CC8.1", "PCI-DSS-4.0.1:6.2.4"), observe)

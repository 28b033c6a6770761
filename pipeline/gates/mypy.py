"""mypy --strict over the source packages: type errors as facts."""

from __future__ import annotations

import json
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
    argv = [ws.tool("mypy"), "--strict", "--output", "json", "--no-error-summary"]
    argv += ws.source_packages
    run = run_tool(argv, cwd=ws.root, timeout_s=ws.timeout_s)
    errors: list[dict[str, Any]] = []
    for line in run.stdout.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and item.get("severity") == "error":
            errors.append(
                {
                    "file": item.get("file"),
                    "line": item.get("line"),
                    "code": item.get("code"),
                    "message": item.get("message"),
                }
            )
    facts: dict[str, Any] = {
        "errors": errors[:MAX_FINDINGS_IN_FACTS],
        "error_count": len(errors),
        "exit_code": run.exit_code,
    }
    if run.exit_code not in (0, 1) or (run.exit_code == 1 and not errors):
        facts["tool_error"] = tool_error(run)
    step.attach(step.write("mypy.jsonl", run.stdout), "application/jsonl")
    digest = config_digest(argv, [ws.root / "pyproject.toml"], ws.root, step.volatile())
    return Observation(Tool("mypy", dist_version("mypy"), digest), facts, {"errors": len(errors)})


GATE = Gate("mypy", ("SOC2:CC8.1", "PCI-DSS-4.0.1:6.2.4"), observe)

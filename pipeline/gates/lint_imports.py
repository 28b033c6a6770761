"""import-linter: the import contracts in pyproject.toml, kept or broken."""

from __future__ import annotations

import re
from typing import Any

from pipeline.gates.step import Gate, GateStep, Observation, Tool, dist_version, tool_error
from pipeline.workspace import config_digest, run_tool


def observe(step: GateStep) -> Observation:
    ws = step.ws
    argv = [ws.tool("lint-imports"), "--no-cache"]
    run = run_tool(argv, cwd=ws.root, timeout_s=ws.timeout_s)
    summary = re.search(r"Contracts: (\d+) kept, (\d+) broken", run.stdout)
    facts: dict[str, Any] = {"exit_code": run.exit_code}
    if summary:
        facts["kept"], facts["broken"] = int(summary[1]), int(summary[2])
    else:
        facts["tool_error"] = tool_error(run) + run.stdout[-800:]
    step.attach(step.write("lint-imports.txt", run.stdout), "text/plain")
    digest = config_digest(argv, [ws.root / "pyproject.toml"], ws.root, step.volatile())
    return Observation(
        Tool("import-linter", dist_version("import-linter"), digest),
        facts,
        {"broken_contracts": int(facts.get("broken", 0))},
    )


GATE = Gate("lint-imports", ("SOC2:CC8.1", "PCI-DSS-4.0.1:6.2.4"), observe)

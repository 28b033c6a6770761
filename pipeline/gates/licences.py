"""pip-licenses over the runtime dependencies (`requirements-runtime.lock`, what ships).

The gate reports each pinned package's declared licence (trove classifiers, else the
metadata's licence expression or field); the allow-list and its exceptions are Rego data in
`policies/pipeline/licences.rego`.
"""

from __future__ import annotations

from typing import Any

from packaging.utils import canonicalize_name

from pipeline.gates.step import (
    Gate,
    GateStep,
    Observation,
    Tool,
    dist_version,
    locked_pins,
    parse_json,
    tool_error,
)
from pipeline.workspace import config_digest, run_tool

RUNTIME_LOCK = "requirements-runtime.lock"


def observe(step: GateStep) -> Observation:
    ws = step.ws
    lock = ws.root / RUNTIME_LOCK
    pinned = locked_pins(lock.read_text()) if lock.is_file() else []
    facts: dict[str, Any] = {"pinned": pinned, "packages": []}
    argv = [ws.tool("pip-licenses"), "--format=json", "--from=mixed", "--with-urls"]
    if not lock.is_file():
        facts["tool_error"] = f"no {RUNTIME_LOCK} in the tree"
    elif pinned:
        argv += ["--packages", *[p["name"] for p in pinned]]
        run = run_tool(argv, cwd=ws.root, timeout_s=ws.timeout_s)
        listed = parse_json(run.stdout)
        if not isinstance(listed, list) or run.exit_code != 0:
            facts["tool_error"] = tool_error(run)
        else:
            facts["packages"] = [
                {
                    "name": canonicalize_name(str(item.get("Name", ""))),
                    "version": item.get("Version"),
                    "licence": item.get("License"),
                }
                for item in listed
            ]
        step.attach(step.write("licences.json", run.stdout), "application/json")
    digest = config_digest(argv[:4], [lock], ws.root, step.volatile())
    return Observation(
        Tool("pip-licenses", dist_version("pip-licenses"), digest),
        facts,
        {"packages": len(facts["packages"]), "pinned": len(pinned)},
    )


GATE = Gate("licences", ("SOC2:CC8.1", "PCI-DSS-4.0.1:6.3.2"), observe)

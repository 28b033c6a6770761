"""opa fmt, opa check --strict and opa test --coverage over the tree's Rego policies."""

from __future__ import annotations

import json
import re
from typing import Any

from pipeline.gates.step import Gate, GateStep, Observation, Tool, parse_json, tool_error
from pipeline.workspace import Workspace, config_digest, run_tool

COVERAGE_LIMIT_CHARS = 20_000_000


def _opa_version(ws: Workspace) -> str:
    run = run_tool([str(ws.opa), "version"], cwd=ws.root, timeout_s=60)
    found = re.search(r"Version: (\S+)", run.stdout)
    return found[1] if found else "unavailable"


def observe(step: GateStep) -> Observation:
    ws = step.ws
    opa, policies = str(ws.opa), "policies"
    fmt = run_tool([opa, "fmt", "--fail", "--list", policies], cwd=ws.root, timeout_s=300)
    check = run_tool([opa, "check", "--strict", policies], cwd=ws.root, timeout_s=300)
    tests = run_tool([opa, "test", "--format", "json", policies], cwd=ws.root, timeout_s=600)
    # The coverage report lists every covered span: hundreds of KB for this repository.
    cover = run_tool(
        [opa, "test", "--coverage", "--format", "json", policies],
        cwd=ws.root,
        timeout_s=600,
        limit_chars=COVERAGE_LIMIT_CHARS,
    )
    cases = parse_json(tests.stdout)
    coverage = parse_json(cover.stdout)
    failed = [
        {
            "package": c.get("package"),
            "name": c.get("name"),
            "error": (c.get("error") or {}).get("message")
            if isinstance(c.get("error"), dict)
            else c.get("error"),
        }
        for c in (cases or [])
        if c.get("fail") or c.get("error")
    ]
    facts: dict[str, Any] = {
        "fmt": {"exit_code": fmt.exit_code, "unformatted": fmt.stdout.split()},
        "check": {"exit_code": check.exit_code, "errors": check.stderr.strip()[-2000:]},
        "test": {
            "exit_code": tests.exit_code,
            "total": len(cases or []),
            "passed": sum(
                1
                for c in (cases or [])
                if not c.get("fail") and not c.get("error") and not c.get("skip")
            ),
            "failed": failed,
        },
        "coverage_percent": (coverage or {}).get("coverage"),
    }
    if cases is None and tests.exit_code != 0:
        # `opa test` prints nothing parsable when the policies do not even compile.
        facts["test"]["failed"] = [{"error": tests.stderr.strip()[-2000:]}]
    if tests.exit_code in (124, 127):
        facts["tool_error"] = tool_error(tests)
    step.attach(
        step.write(
            "opa.json",
            json.dumps(
                {"tests": cases, "coverage": coverage, "fmt": fmt.stdout, "check": check.stderr}
            ),
        ),
        "application/json",
    )
    volatile = step.volatile()
    policy_files = sorted((ws.root / policies).rglob("*.rego"))
    step.inputs["policies"] = config_digest([], policy_files, ws.root, volatile)
    digest = config_digest([opa, "fmt", "check", "test", policies], [], ws.root, volatile)
    return Observation(
        Tool("opa", _opa_version(ws), digest),
        facts,
        {
            "failed_tests": len(failed),
            "unformatted": len(fmt.stdout.split()),
            "check_errors": int(check.exit_code != 0),
        },
    )


GATE = Gate("opa", ("SOC2:CC8.1", "PCI-DSS-4.0.1:6.2.4"), observe)

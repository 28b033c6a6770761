"""cyclonedx-py: a CycloneDX 1.6 SBOM of requirements.lock, validated by the tool."""

from __future__ import annotations

from typing import Any

from pipeline.gates.step import (
    Gate,
    GateStep,
    Observation,
    Tool,
    dist_version,
    load_json,
    locked_pins,
    read_toml,
    tool_error,
)
from pipeline.workspace import config_digest, run_tool


def observe(step: GateStep) -> Observation:
    ws = step.ws
    report = step.fresh("sbom.cdx.json")
    argv = [
        ws.tool("cyclonedx-py"),
        "requirements",
        "--of",
        "JSON",
        "--sv",
        "1.6",
        "--output-reproducible",
        "--validate",
        "-o",
        str(report),
        "requirements.lock",
    ]
    if "project" in read_toml(ws.root / "pyproject.toml"):
        # The root component (name, version) only exists for a PEP 621 project.
        argv[2:2] = ["--pyproject", "pyproject.toml"]
    run = run_tool(argv, cwd=ws.root, timeout_s=ws.timeout_s)
    parsed = load_json(report)
    components = (parsed or {}).get("components", [])
    lock = ws.root / "requirements.lock"
    facts: dict[str, Any] = {
        "exit_code": run.exit_code,
        "bom_format": (parsed or {}).get("bomFormat"),
        "spec_version": (parsed or {}).get("specVersion"),
        "component_count": len(components),
        "locked_count": len(locked_pins(lock.read_text())) if lock.is_file() else 0,
    }
    if parsed is None:
        facts["tool_error"] = tool_error(run)
    step.attach(report, "application/vnd.cyclonedx+json")
    digest = config_digest(argv, [], ws.root, step.volatile())
    return Observation(
        Tool("cyclonedx-py", dist_version("cyclonedx-bom"), digest),
        facts,
        {"components": len(components)},
    )


GATE = Gate("sbom", ("SOC2:CC7.1", "PCI-DSS-4.0.1:6.3.2"), observe)

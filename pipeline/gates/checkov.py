"""checkov (its own venv) on the Dockerfile and the GitHub workflows."""

from __future__ import annotations

from typing import Any

from pipeline.gates.step import (
    MAX_FINDINGS_IN_FACTS,
    Gate,
    GateStep,
    Observation,
    Tool,
    load_json,
    tool_error,
)
from pipeline.workspace import config_digest, run_tool


def observe(step: GateStep) -> Observation:
    ws = step.ws
    targets: list[str] = []
    if (ws.root / "Dockerfile").is_file():
        targets += ["--file", "Dockerfile"]
    # One --file per target: checkov ignores --file when --directory is also given.
    workflows = ws.root / ".github" / "workflows"
    for workflow in sorted([*workflows.glob("*.yml"), *workflows.glob("*.yaml")]):
        targets += ["--file", workflow.relative_to(ws.root).as_posix()]
    # One run writes both the JSON the facts come from and SARIF 2.1.0 for code scanning.
    for stale in ("results_json.json", "results_sarif.sarif"):
        step.fresh(stale)
    argv = [
        str(ws.checkov),
        *targets,
        "--framework",
        "dockerfile",
        "github_actions",
        "--skip-download",
        "--output",
        "json",
        "--output",
        "sarif",
        "--output-file-path",
        str(step.folder),
        "--compact",
        "--quiet",
    ]
    run = run_tool(argv, cwd=ws.root, timeout_s=ws.timeout_s)
    report = step.folder / "results_json.json"
    parsed = load_json(report)
    reports = parsed if isinstance(parsed, list) else [parsed] if isinstance(parsed, dict) else []
    frameworks: dict[str, int] = {}
    failed: list[dict[str, Any]] = []
    parsing_errors: list[str] = []
    for item in reports:
        if not isinstance(item, dict) or "results" not in item:
            continue
        results = item["results"]
        summary = item.get("summary", {})
        frameworks[item.get("check_type", "?")] = int(summary.get("passed", 0)) + int(
            summary.get("failed", 0)
        )
        failed += [
            {
                "check_id": c.get("check_id"),
                "file": c.get("repo_file_path") or c.get("file_path"),
                "resource": c.get("resource"),
                "name": c.get("check_name"),
                "line": (c.get("file_line_range") or [None])[0],
            }
            for c in results.get("failed_checks", [])
        ]
        parsing_errors += [str(e) for e in summary.get("parsing_errors_list", [])]
        parsing_errors += [str(e) for e in results.get("parsing_errors", [])]
        if isinstance(summary.get("parsing_errors"), int) and summary["parsing_errors"] > 0:
            parsing_errors.append(f"{summary['parsing_errors']} file(s) of {item['check_type']}")
    facts: dict[str, Any] = {
        "frameworks": frameworks,
        "failed": failed[:MAX_FINDINGS_IN_FACTS],
        "parsing_errors": parsing_errors,
        "exit_code": run.exit_code,
        "targets": [t for t in targets if not t.startswith("--")],
    }
    if parsed is None:
        facts["tool_error"] = tool_error(run)
    # checkov reports its own version in every summary; asking again costs a 6 s start-up.
    versions = {
        str(r.get("summary", {}).get("checkov_version"))
        for r in reports
        if isinstance(r, dict) and r.get("summary", {}).get("checkov_version")
    }
    step.attach(report, "application/json")
    facts["sarif_version"] = step.sarif(step.folder / "results_sarif.sarif")
    digest = config_digest(argv, [ws.root / ".checkov.yaml"], ws.root, step.volatile())
    return Observation(
        Tool("checkov", ",".join(sorted(versions)) or "unavailable", digest),
        facts,
        {"failed": len(failed), "passed": sum(frameworks.values()) - len(failed)},
    )


GATE = Gate("checkov", ("SOC2:CC7.1", "SOC2:CC8.1", "PCI-DSS-4.0.1:6.2.4"), observe)

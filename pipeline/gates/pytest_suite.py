"""pytest + pytest-cov: the test suite's JUnit report and line+branch coverage.

With `--pytest-reports DIR` the gate ingests the reports an earlier `make test` wrote
instead of running the suite a second time.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

from pipeline.gates.step import (
    MAX_FINDINGS_IN_FACTS,
    Gate,
    GateStep,
    Observation,
    Tool,
    dist_version,
    load_json,
)
from pipeline.workspace import config_digest, run_tool


def junit_totals(path: Path) -> dict[str, Any] | None:
    """Totals and failed case names of a JUnit XML report; None when unreadable."""
    try:
        tree = ElementTree.parse(path)  # noqa: S314 - our own pytest's report, not input.
    except (OSError, ElementTree.ParseError):
        return None
    suites = [tree.getroot()] if tree.getroot().tag == "testsuite" else list(tree.getroot())
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed: list[str] = []
    for suite in suites:
        for key in totals:
            totals[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(f"{case.get('classname')}::{case.get('name')}")
    return {**totals, "failed_cases": failed[:MAX_FINDINGS_IN_FACTS]}


def observe(step: GateStep) -> Observation:
    ws = step.ws
    argv: list[str] = []
    exit_code: int | None = None
    if ws.pytest_reports is not None:
        junit, coverage_json = ws.pytest_reports / "junit.xml", ws.pytest_reports / "coverage.json"
        source = "ingested"
    else:
        junit, coverage_json = step.fresh("junit.xml"), step.fresh("coverage.json")
        argv = [
            ws.tool("python"),
            "-m",
            "pytest",
            *ws.test_paths,
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            "--cov-branch",
            *[f"--cov={p}" for p in ws.source_packages],
            f"--cov-report=json:{coverage_json}",
            "--cov-report=term:skip-covered",
        ]
        run = run_tool(argv, cwd=ws.root, timeout_s=ws.timeout_s)
        exit_code, source = run.exit_code, "executed"
        step.write("pytest.log", run.stdout + run.stderr)
    totals = junit_totals(junit)
    coverage = load_json(coverage_json)
    facts: dict[str, Any] = {
        "source": source,
        "exit_code": exit_code,
        "coverage_percent": ((coverage or {}).get("totals") or {}).get("percent_covered"),
        **(totals or {}),
    }
    if totals is None:
        facts["tool_error"] = f"no JUnit report at {junit}"
    elif coverage is None:
        facts["tool_error"] = f"no coverage report at {coverage_json}"
    step.attach(junit, "application/xml")
    step.attach(coverage_json, "application/json")
    digest = config_digest(
        argv or ["ingest"], [ws.root / "pyproject.toml"], ws.root, step.volatile()
    )
    return Observation(
        Tool(
            "pytest",
            f"pytest {dist_version('pytest')}; pytest-cov {dist_version('pytest-cov')}",
            digest,
        ),
        facts,
        {
            "tests": int(facts.get("tests", 0)),
            "failures": int(facts.get("failures", 0)),
            "errors": int(facts.get("errors", 0)),
        },
    )


GATE = Gate("pytest", ("SOC2:CC8.1", "PCI-DSS-4.0.1:6.2.4"), observe)

"""The scanning gates. Each runs one tool and reduces its report to machine-readable facts.

A gate never decides pass or fail: `pipeline.policy` hands the facts to the Rego policy in
`policies/pipeline/`. A gate whose tool could not run reports `tool_error`, which the
policy turns into a failure, so a broken tool can never look like a clean scan.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from pipeline.advisories import AdvisoryDatabase, AdvisoryDatabaseError
from pipeline.advisory_snapshot import describe as describe_snapshot
from pipeline.osv_server import serving
from pipeline.workspace import ToolRun, Workspace, config_digest, run_tool, sha256_file

MAX_FINDINGS_IN_FACTS = 500
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    version: str
    config_digest: str


@dataclass(frozen=True, slots=True)
class Attachment:
    """A report file, referenced from evidence by its digest."""

    name: str
    path: Path
    digest: str
    media_type: str
    size_bytes: int


@dataclass(slots=True)
class GateResult:
    """What a gate observed. `facts` is the policy input; `finding_counts` is for humans."""

    gate: str
    controls: tuple[str, ...]
    tool: Tool
    facts: dict[str, Any]
    finding_counts: dict[str, int]
    started_at: datetime
    finished_at: datetime
    duration_ms: int
    attachments: list[Attachment] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)


def _now() -> datetime:
    return datetime.now(UTC)


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unavailable"


def attach(ws: Workspace, gate: str, path: Path, media_type: str) -> list[Attachment]:
    """Store a report content-addressed under reports/attachments and describe it."""
    if not path.is_file():
        return []
    digest = sha256_file(path)
    store = ws.reports_dir / "attachments" / digest.replace(":", "/")
    store.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, store)
    return [
        Attachment(
            name=f"{gate}/{path.name}",
            path=store,
            digest=digest,
            media_type=media_type,
            size_bytes=path.stat().st_size,
        )
    ]


def _write(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _volatile(ws: Workspace) -> dict[str, str]:
    return {str(ws.reports_dir): "<reports>", str(ws.bin_dir): "<bin>", str(ws.home): "<home>"}


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _tool_error(run: ToolRun) -> str:
    # Some tools (bandit -q) explain a usage error on stdout, others on stderr.
    said = (run.stderr.strip() or run.stdout.strip())[-800:]
    return f"{run.argv[0].rsplit('/', 1)[-1]} exited {run.exit_code}: {said}"


class _Clock:
    def __init__(self) -> None:
        self.started_at = _now()
        self._start = time.monotonic()

    def finish(self) -> tuple[datetime, int]:
        return _now(), int((time.monotonic() - self._start) * 1000)


def _result(
    ws: Workspace,
    gate: str,
    clock: _Clock,
    tool: Tool,
    facts: dict[str, Any],
    counts: dict[str, int],
    attachments: list[Attachment],
) -> GateResult:
    finished_at, duration_ms = clock.finish()
    return GateResult(
        gate=gate,
        controls=CONTROLS[gate],
        tool=tool,
        facts=facts,
        finding_counts=counts,
        started_at=clock.started_at,
        finished_at=finished_at,
        duration_ms=duration_ms,
        attachments=attachments,
        inputs={
            "requirements.lock": sha256_file(ws.root / "requirements.lock"),
            "pyproject.toml": sha256_file(ws.root / "pyproject.toml"),
        },
    )


def ruff_gate(ws: Workspace) -> GateResult:
    clock = _Clock()
    out = ws.reports_dir / "ruff"
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
            }
            for v in (parsed or [])[:MAX_FINDINGS_IN_FACTS]
        ],
        "violation_count": len(parsed or []),
        "unformatted": unformatted[:MAX_FINDINGS_IN_FACTS],
        "format_exit_code": fmt.exit_code,
    }
    if parsed is None:
        facts["tool_error"] = _tool_error(check)
    elif fmt.exit_code not in (0, 1):
        facts["tool_error"] = _tool_error(fmt)
    report = _write(out / "ruff.json", json.dumps({"check": parsed, "format": fmt.stdout}))
    tool = Tool(
        "ruff",
        _dist_version("ruff"),
        config_digest(
            check_argv + format_argv, [ws.root / "pyproject.toml"], ws.root, _volatile(ws)
        ),
    )
    counts = {"violations": len(parsed or []), "unformatted": len(unformatted)}
    return _result(
        ws, "ruff", clock, tool, facts, counts, attach(ws, "ruff", report, "application/json")
    )


def mypy_gate(ws: Workspace) -> GateResult:
    clock = _Clock()
    argv = [
        ws.tool("mypy"),
        "--strict",
        "--output",
        "json",
        "--no-error-summary",
        *ws.source_packages,
    ]
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
        facts["tool_error"] = _tool_error(run)
    report = _write(ws.reports_dir / "mypy" / "mypy.jsonl", run.stdout)
    tool = Tool(
        "mypy",
        _dist_version("mypy"),
        config_digest(argv, [ws.root / "pyproject.toml"], ws.root, _volatile(ws)),
    )
    return _result(
        ws,
        "mypy",
        clock,
        tool,
        facts,
        {"errors": len(errors)},
        attach(ws, "mypy", report, "application/jsonl"),
    )


def lint_imports_gate(ws: Workspace) -> GateResult:
    clock = _Clock()
    argv = [ws.tool("lint-imports"), "--no-cache"]
    run = run_tool(argv, cwd=ws.root, timeout_s=ws.timeout_s)
    summary = re.search(r"Contracts: (\d+) kept, (\d+) broken", run.stdout)
    facts: dict[str, Any] = {"exit_code": run.exit_code}
    if summary:
        facts["kept"], facts["broken"] = int(summary[1]), int(summary[2])
    else:
        facts["tool_error"] = _tool_error(run) + run.stdout[-800:]
    report = _write(ws.reports_dir / "lint-imports" / "lint-imports.txt", run.stdout)
    tool = Tool(
        "import-linter",
        _dist_version("import-linter"),
        config_digest(argv, [ws.root / "pyproject.toml"], ws.root, _volatile(ws)),
    )
    counts = {"broken_contracts": int(facts.get("broken", 0))}
    return _result(
        ws,
        "lint-imports",
        clock,
        tool,
        facts,
        counts,
        attach(ws, "lint-imports", report, "text/plain"),
    )


def bandit_gate(ws: Workspace) -> GateResult:
    clock = _Clock()
    report = ws.reports_dir / "bandit" / "bandit.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.unlink(missing_ok=True)
    argv = [ws.tool("bandit"), "-r", *ws.source_packages, "-f", "json", "-o", str(report), "-q"]
    run = run_tool(argv, cwd=ws.root, timeout_s=ws.timeout_s)
    parsed = _load_json(report)
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
        facts["tool_error"] = _tool_error(run)
    counts = {
        sev.lower(): sum(1 for i in issues if i["severity"] == sev)
        for sev in ("HIGH", "MEDIUM", "LOW")
    }
    tool = Tool("bandit", _dist_version("bandit"), config_digest(argv, [], ws.root, _volatile(ws)))
    return _result(
        ws, "bandit", clock, tool, facts, counts, attach(ws, "bandit", report, "application/json")
    )


def locked_pins(lock_text: str) -> list[dict[str, str]]:
    """`name==version` pins of a requirements lock, names canonicalised."""
    return [{"name": canonicalize_name(m[1]), "version": m[2]} for m in _PIN.finditer(lock_text)]


def _pip_audit_argv(ws: Workspace, lock: Path, report: Path, cache: str) -> list[str]:
    return [
        ws.tool("pip-audit"),
        "--requirement",
        str(lock),
        "--disable-pip",
        "--strict",
        "--vulnerability-service",
        "osv",
        "--format",
        "json",
        "--output",
        str(report),
        "--progress-spinner",
        "off",
        "--cache-dir",
        cache,
    ]


def _pip_audit_dependencies(facts: dict[str, Any], report: Path, run: ToolRun) -> None:
    parsed = _load_json(report)
    if parsed is None:
        facts["tool_error"] = _tool_error(run)
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


def pip_audit_gate(ws: Workspace) -> GateResult:
    """pip-audit over the lock: offline against the shipped snapshot, or pip-audit's OSV."""
    clock = _Clock()
    lock = ws.root / "requirements.lock"
    report = ws.reports_dir / "pip-audit" / "pip-audit.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.unlink(missing_ok=True)
    locked = locked_pins(lock.read_text()) if lock.is_file() else []
    facts: dict[str, Any] = {"locked": locked}
    argv: list[str] = []
    volatile = _volatile(ws)
    if ws.advisory_source == "online":
        facts["advisory_db"] = {
            "source": "online",
            "service": "osv",
            "snapshot_date": None,
            "sha256": None,
            "queried_at": _now().isoformat().replace("+00:00", "Z"),
        }
        with tempfile.TemporaryDirectory() as cache:
            argv = _pip_audit_argv(ws, lock, report, cache)
            volatile[cache] = "<cache>"
            run = run_tool(argv, cwd=ws.root, timeout_s=ws.timeout_s)
        _pip_audit_dependencies(facts, report, run)
        database = None
    else:
        try:
            database = AdvisoryDatabase.load(ws.advisory_db)
        except AdvisoryDatabaseError as error:
            facts["tool_error"] = str(error)
            facts["advisory_db"] = {"source": "snapshot", "snapshot_date": None, "sha256": None}
            database = None
    if database is not None:
        facts["advisory_count"] = database.advisory_count
        facts["advisory_db"] = describe_snapshot(ws.advisory_db, database.tree_sha256)
        with tempfile.TemporaryDirectory() as cache, serving(database) as (url, log):
            argv = _pip_audit_argv(ws, lock, report, cache)
            argv[argv.index("osv") + 1 : argv.index("osv") + 1] = ["--osv-url", url]
            volatile.update({url: "<osv-url>", cache: "<cache>"})
            run = run_tool(argv, cwd=ws.root, timeout_s=ws.timeout_s)
            facts["unchecked"] = list(log.unchecked)
            facts["queried"] = [
                {"name": canonicalize_name(n), "version": v} for n, v in log.queried
            ]
        _pip_audit_dependencies(facts, report, run)
    vulns = sum(len(d["vulns"]) for d in facts.get("dependencies", []))
    counts = {
        "vulnerabilities": vulns,
        "dependencies": len(facts.get("dependencies", [])),
        "unchecked": len(facts.get("unchecked", [])) + len(facts.get("skipped", [])),
    }
    tool = Tool(
        "pip-audit",
        _dist_version("pip-audit"),
        config_digest(argv, [], ws.root, volatile),
    )
    return _result(
        ws,
        "pip-audit",
        clock,
        tool,
        facts,
        counts,
        attach(ws, "pip-audit", report, "application/json"),
    )


def checkov_gate(ws: Workspace) -> GateResult:
    clock = _Clock()
    report = ws.reports_dir / "checkov" / "checkov.json"
    targets: list[str] = []
    if (ws.root / "Dockerfile").is_file():
        targets += ["--file", "Dockerfile"]
    # One --file per target: checkov ignores --file when --directory is also given.
    workflows = ws.root / ".github" / "workflows"
    for workflow in sorted([*workflows.glob("*.yml"), *workflows.glob("*.yaml")]):
        targets += ["--file", workflow.relative_to(ws.root).as_posix()]
    argv = [
        str(ws.checkov),
        *targets,
        "--framework",
        "dockerfile",
        "github_actions",
        "--skip-download",
        "--output",
        "json",
        "--compact",
        "--quiet",
    ]
    run = run_tool(argv, cwd=ws.root, timeout_s=ws.timeout_s)
    _write(report, run.stdout)
    try:
        parsed = json.loads(run.stdout)
    except ValueError:
        parsed = None
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
            }
            for c in results.get("failed_checks", [])
        ]
        parsing_errors += [str(e) for e in summary.get("parsing_errors_list", [])]
        parsing_errors += [str(e) for e in results.get("parsing_errors", [])]
    facts: dict[str, Any] = {
        "frameworks": frameworks,
        "failed": failed[:MAX_FINDINGS_IN_FACTS],
        "parsing_errors": parsing_errors,
        "exit_code": run.exit_code,
        "targets": [t for t in targets if not t.startswith("--")],
    }
    if parsed is None:
        facts["tool_error"] = _tool_error(run)
    # checkov reports its own version in every summary; asking again costs a 6 s start-up.
    versions = {
        str(r.get("summary", {}).get("checkov_version"))
        for r in reports
        if isinstance(r, dict) and r.get("summary", {}).get("checkov_version")
    }
    tool = Tool(
        "checkov",
        ",".join(sorted(versions)) or "unavailable",
        config_digest(argv, [ws.root / ".checkov.yaml"], ws.root, _volatile(ws)),
    )
    counts = {"failed": len(failed), "passed": sum(frameworks.values()) - len(failed)}
    return _result(
        ws,
        "checkov",
        clock,
        tool,
        facts,
        counts,
        attach(ws, "checkov", report, "application/json"),
    )


def _opa_version(ws: Workspace) -> str:
    run = run_tool([str(ws.opa), "version"], cwd=ws.root, timeout_s=60)
    found = re.search(r"Version: (\S+)", run.stdout)
    return found[1] if found else "unavailable"


def opa_gate(ws: Workspace) -> GateResult:
    clock = _Clock()
    opa, policies = str(ws.opa), "policies"
    fmt = run_tool([opa, "fmt", "--fail", "--list", policies], cwd=ws.root, timeout_s=300)
    check = run_tool([opa, "check", "--strict", policies], cwd=ws.root, timeout_s=300)
    tests = run_tool([opa, "test", "--format", "json", policies], cwd=ws.root, timeout_s=600)
    cover = run_tool(
        [opa, "test", "--coverage", "--format", "json", policies], cwd=ws.root, timeout_s=600
    )
    try:
        cases = json.loads(tests.stdout)
    except ValueError:
        cases = None
    coverage = _load_json_text(cover.stdout)
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
        facts["tool_error"] = _tool_error(tests)
    report = _write(
        ws.reports_dir / "opa" / "opa.json",
        json.dumps(
            {"tests": cases, "coverage": coverage, "fmt": fmt.stdout, "check": check.stderr}
        ),
    )
    policy_files = sorted((ws.root / policies).rglob("*.rego"))
    tool = Tool(
        "opa",
        _opa_version(ws),
        config_digest([opa, "fmt", "check", "test", policies], [], ws.root, _volatile(ws)),
    )
    result = _result(
        ws,
        "opa",
        clock,
        tool,
        facts,
        {
            "failed_tests": len(failed),
            "unformatted": len(fmt.stdout.split()),
            "check_errors": int(check.exit_code != 0),
        },
        attach(ws, "opa", report, "application/json"),
    )
    result.inputs["policies"] = config_digest([], policy_files, ws.root, _volatile(ws))
    return result


def _load_json_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _junit_totals(path: Path) -> dict[str, Any] | None:
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


def pytest_gate(ws: Workspace) -> GateResult:
    clock = _Clock()
    out = ws.reports_dir / "pytest"
    out.mkdir(parents=True, exist_ok=True)
    argv: list[str] = []
    if ws.pytest_reports is not None:
        # Ingest the reports `make test` produced, so CI does not run the suite twice.
        junit, coverage_json = ws.pytest_reports / "junit.xml", ws.pytest_reports / "coverage.json"
        exit_code: int | None = None
        facts_source = "ingested"
    else:
        junit, coverage_json = out / "junit.xml", out / "coverage.json"
        junit.unlink(missing_ok=True)
        coverage_json.unlink(missing_ok=True)
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
        exit_code = run.exit_code
        facts_source = "executed"
        _write(out / "pytest.log", run.stdout + run.stderr)
    totals = _junit_totals(junit)
    coverage = _load_json(coverage_json)
    facts: dict[str, Any] = {
        "source": facts_source,
        "exit_code": exit_code,
        "coverage_percent": ((coverage or {}).get("totals") or {}).get("percent_covered"),
        **(totals or {}),
    }
    if totals is None:
        facts["tool_error"] = f"no JUnit report at {junit}"
    elif coverage is None:
        facts["tool_error"] = f"no coverage report at {coverage_json}"
    tool = Tool(
        "pytest",
        f"pytest {_dist_version('pytest')}; pytest-cov {_dist_version('pytest-cov')}",
        config_digest(argv or ["ingest"], [ws.root / "pyproject.toml"], ws.root, _volatile(ws)),
    )
    attachments = attach(ws, "pytest", junit, "application/xml") + attach(
        ws, "pytest", coverage_json, "application/json"
    )
    counts = {
        "tests": int(facts.get("tests", 0)),
        "failures": int(facts.get("failures", 0)),
        "errors": int(facts.get("errors", 0)),
    }
    return _result(ws, "pytest", clock, tool, facts, counts, attachments)


def sbom_gate(ws: Workspace) -> GateResult:
    clock = _Clock()
    report = ws.reports_dir / "sbom" / "sbom.cdx.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.unlink(missing_ok=True)
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
    if "project" in _toml(ws.root / "pyproject.toml"):
        # The root component (name, version) only exists for a PEP 621 project.
        argv[2:2] = ["--pyproject", "pyproject.toml"]
    run = run_tool(argv, cwd=ws.root, timeout_s=ws.timeout_s)
    parsed = _load_json(report)
    components = (parsed or {}).get("components", [])
    facts: dict[str, Any] = {
        "exit_code": run.exit_code,
        "bom_format": (parsed or {}).get("bomFormat"),
        "spec_version": (parsed or {}).get("specVersion"),
        "component_count": len(components),
        "locked_count": len(locked_pins((ws.root / "requirements.lock").read_text()))
        if (ws.root / "requirements.lock").is_file()
        else 0,
    }
    if parsed is None:
        facts["tool_error"] = _tool_error(run)
    tool = Tool(
        "cyclonedx-py",
        _dist_version("cyclonedx-bom"),
        config_digest(argv, [], ws.root, _volatile(ws)),
    )
    return _result(
        ws,
        "sbom",
        clock,
        tool,
        facts,
        {"components": len(components)},
        attach(ws, "sbom", report, "application/vnd.cyclonedx+json"),
    )


# Which controls each gate gives evidence for.
CONTROLS: Mapping[str, tuple[str, ...]] = {
    "ruff": ("SOC2:CC8.1", "PCI-DSS-4.0.1:6.2.4"),
    "mypy": ("SOC2:CC8.1", "PCI-DSS-4.0.1:6.2.4"),
    "lint-imports": ("SOC2:CC8.1", "PCI-DSS-4.0.1:6.2.4"),
    "bandit": ("SOC2:CC7.1", "PCI-DSS-4.0.1:6.2.4"),
    "pip-audit": ("SOC2:CC7.1", "PCI-DSS-4.0.1:6.3.3"),
    "checkov": ("SOC2:CC7.1", "SOC2:CC8.1", "PCI-DSS-4.0.1:6.2.4"),
    "opa": ("SOC2:CC8.1", "PCI-DSS-4.0.1:6.2.4"),
    "pytest": ("SOC2:CC8.1", "PCI-DSS-4.0.1:6.2.4"),
    "sbom": ("SOC2:CC7.1", "PCI-DSS-4.0.1:6.3.2"),
}

GATES: Mapping[str, Callable[[Workspace], GateResult]] = {
    "ruff": ruff_gate,
    "mypy": mypy_gate,
    "lint-imports": lint_imports_gate,
    "bandit": bandit_gate,
    "pip-audit": pip_audit_gate,
    "checkov": checkov_gate,
    "opa": opa_gate,
    "pytest": pytest_gate,
    "sbom": sbom_gate,
}

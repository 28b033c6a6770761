"""detect-secrets over the tree's files, against the committed baseline `.secrets.baseline`.

The baseline lists the findings that were reviewed and accepted (a test key, a digest in a
fixture, the dev stack's well-known root token). The policy fails every finding that the
baseline does not list, and every baseline entry someone marked as a real secret.
"""

from __future__ import annotations

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
    parse_json,
    tool_error,
)
from pipeline.workspace import Workspace, config_digest, run_tool

BASELINE = ".secrets.baseline"
# Hash-pinned locks are walls of sha256 hex, and the advisory archive is binary.
EXCLUDE_FILES = r"(\.lock|\.tar\.xz|\.secrets\.baseline)$"
MAX_FILES = 20_000


def tree_files(root: Path) -> list[str]:
    """The files a reviewer sees: git's tracked and unignored files, else every file
    outside dot-folders (a tree that is not a git checkout)."""
    listed = run_tool(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root, timeout_s=60
    )
    if listed.exit_code == 0:
        names = listed.stdout.splitlines()
    else:
        names = [
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
        ]
    return sorted(n for n in names if (root / n).is_file())[:MAX_FILES]


def scan_argv(ws: Workspace, files: list[str], *extra: str) -> list[str]:
    return [ws.tool("detect-secrets"), "scan", "--exclude-files", EXCLUDE_FILES, *extra, *files]


def _entries(results: Any) -> list[dict[str, Any]]:
    if not isinstance(results, dict):
        return []
    return [
        {
            "file": name,
            "type": item.get("type"),
            "hashed_secret": item.get("hashed_secret"),
            "line": item.get("line_number"),
            "is_secret": item.get("is_secret"),
        }
        for name, items in sorted(results.items())
        for item in items
    ]


def observe(step: GateStep) -> Observation:
    ws = step.ws
    files = tree_files(ws.root)
    argv = scan_argv(ws, files)
    run = run_tool(argv, cwd=ws.root, timeout_s=ws.timeout_s)
    scanned = parse_json(run.stdout)
    baseline = load_json(ws.root / BASELINE)
    findings = _entries((scanned or {}).get("results"))
    facts: dict[str, Any] = {
        "files_scanned": len(files),
        "findings": findings[:MAX_FINDINGS_IN_FACTS],
        "finding_count": len(findings),
        "baseline_present": baseline is not None,
        "baseline": _entries((baseline or {}).get("results")),
        "exit_code": run.exit_code,
    }
    if scanned is None or run.exit_code != 0:
        facts["tool_error"] = tool_error(run)
    step.attach(step.write("detect-secrets.json", run.stdout), "application/json")
    # The file list is the tree, not configuration: only the command and baseline count.
    digest = config_digest(argv[: -len(files) or None], [ws.root / BASELINE], ws.root)
    return Observation(
        Tool("detect-secrets", dist_version("detect-secrets"), digest),
        facts,
        {"findings": len(findings), "baseline": len(facts["baseline"])},
    )


GATE = Gate("secrets", ("SOC2:CC6.1", "PCI-DSS-4.0.1:6.2.4", "PCI-DSS-4.0.1:8.6.2"), observe)

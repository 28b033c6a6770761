"""Migrations: every database the tree migrates goes from empty to head on a scratch
PostgreSQL, and the schema it ends up with must equal the committed expected schema.

The tree declares its databases in pyproject.toml:

    [tool.pipeline.migrations]
    expected = "pipeline/expected-schema.json"
    upgrade = { app = "app.platform.migrate:upgrade", evidence = "evidence.database:upgrade" }

The project writes its SQL by hand instead of declaring ORM models, so the committed schema
(`python -m pipeline schema-snapshot` writes it) is the model the migrations must match.
A migration edited after the fact, or a schema change nobody reviewed, shows as drift.
"""

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
    load_json,
    parse_json,
    read_toml,
    tool_error,
)
from pipeline.workspace import ToolRun, Workspace, config_digest, run_tool

PROBE_TIMEOUT_S = 600


def settings(ws: Workspace) -> dict[str, Any]:
    """The tree's `[tool.pipeline.migrations]` table (empty when absent)."""
    table = read_toml(ws.root / "pyproject.toml").get("tool", {}).get("pipeline", {})
    found = table.get("migrations", {})
    return found if isinstance(found, dict) else {}


def run_probe(ws: Workspace, upgrades: dict[str, str]) -> ToolRun:
    argv = [ws.tool("python"), "-m", "pipeline.schema_probe"]
    argv += [f"{name}={spec}" for name, spec in sorted(upgrades.items())]
    return run_tool(argv, cwd=ws.root, timeout_s=PROBE_TIMEOUT_S)


def drift(expected: dict[str, list[str]], found: dict[str, list[str]]) -> list[str]:
    """What differs, per database: objects the migrations no longer make, and new ones."""
    lines: list[str] = []
    for name in sorted(set(expected) | set(found)):
        want, have = set(expected.get(name, [])), set(found.get(name, []))
        lines += [f"{name}: missing {item}" for item in sorted(want - have)]
        lines += [f"{name}: unexpected {item}" for item in sorted(have - want)]
    return lines


def observe(step: GateStep) -> Observation:
    ws = step.ws
    config = settings(ws)
    upgrades = {str(k): str(v) for k, v in dict(config.get("upgrade", {})).items()}
    expected_path = ws.root / str(config.get("expected", "pipeline/expected-schema.json"))
    facts: dict[str, Any] = {"databases": sorted(upgrades), "drift": [], "objects": {}}
    if not upgrades:
        facts["tool_error"] = "pyproject.toml declares no [tool.pipeline.migrations] upgrade"
    else:
        run = run_probe(ws, upgrades)
        found = parse_json(run.stdout)
        expected = load_json(expected_path)
        step.attach(step.write("schema.json", run.stdout), "application/json")
        if run.exit_code != 0 or not isinstance(found, dict):
            facts["tool_error"] = "migrating empty databases to head failed: " + tool_error(run)
        elif not isinstance(expected, dict):
            facts["tool_error"] = f"no expected schema at {expected_path.relative_to(ws.root)}"
        else:
            changed = drift(expected, found)
            facts["drift"] = changed[:MAX_FINDINGS_IN_FACTS]
            facts["drift_count"] = len(changed)
            facts["objects"] = {name: len(items) for name, items in found.items()}
    digest = config_digest(
        [json.dumps(upgrades, sort_keys=True)], [expected_path], ws.root, step.volatile()
    )
    return Observation(
        Tool(
            "schema-probe",
            f"alembic {dist_version('alembic')}; pgserver {dist_version('pgserver')}",
            digest,
        ),
        facts,
        {"drift": len(facts["drift"]), "databases": len(upgrades)},
    )


GATE = Gate("migrations", ("SOC2:CC8.1", "PCI-DSS-4.0.1:6.5.1"), observe)

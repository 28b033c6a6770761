"""Evaluates the pipeline's Rego policy with the OPA binary (`opa eval`).

The pipeline never decides pass or fail itself. When OPA cannot answer, the caller gets
PolicyError and must treat the gate or run as failed: no answer is never a pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.workspace import run_tool, tree_digest


class PolicyError(RuntimeError):
    """OPA could not evaluate the policy (missing binary, compile error, undefined result)."""


def evaluate(opa: Path, policy_dir: Path, query: str, document: Any) -> Any:
    """Evaluate `query` (e.g. `data.moneypath.pipeline.gates.decision`) over `document`.

    Raises PolicyError when OPA fails or the query is undefined.
    """
    run = run_tool(
        [str(opa), "eval", "--data", str(policy_dir), "--stdin-input", "--format", "json", query],
        cwd=policy_dir,
        timeout_s=120,
        stdin=json.dumps(document),
    )
    if run.exit_code != 0:
        raise PolicyError(f"opa eval {query} exited {run.exit_code}: {run.stderr.strip()[-800:]}")
    try:
        return json.loads(run.stdout)["result"][0]["expressions"][0]["value"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise PolicyError(f"opa eval {query}: undefined result") from None


def bundle_digest(policy_dir: Path) -> str:
    """Digest of the deciding policy bundle (every .rego and data file under `policy_dir`)."""
    files = [p for p in policy_dir.rglob("*") if p.suffix in {".rego", ".json", ".yaml"}]
    return tree_digest(policy_dir, files)

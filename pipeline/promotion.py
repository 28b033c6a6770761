"""Promotion: record who promoted which artifact to which environment, only with evidence.

The evidence service is asked for the commit's run records and the gate records they link;
the Rego policy `moneypath.pipeline.promotion` decides. Only an allowed promotion is
written, as a `ci.promotion` record; a refused one writes nothing and exits non-zero.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.evidence_client import EvidenceClient, client_from_env
from pipeline.policy import PolicyError, evaluate
from pipeline.runner import EvidenceWriteError

PROMOTION_QUERY = "data.moneypath.pipeline.promotion.decision"
PROMOTION_CONTROLS = ("SOC2:CC8.1", "PCI-DSS-4.0.1:6.5.1")
MAX_LINKED_RECORDS = 50
# Which writers' evidence counts (moneypath.evidence.trust and its reviewed data).
TRUST_POLICY_DIRS = ("evidence", "trust")


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _trust_data(
    policy_dir: Path, scratch: Path, registered: Mapping[str, Sequence[str]]
) -> list[Path]:
    """The trust policy and its reviewed document (siblings of `policies/pipeline`), and
    the run-time registrations as a data file. A missing sibling trusts nobody."""
    paths = [policy_dir.parent / name for name in TRUST_POLICY_DIRS]
    registrations = scratch / "registered.json"
    registrations.write_text(
        json.dumps(
            {
                "trust": {
                    "registered_evidence_submitters": {
                        client_id: list(patterns) for client_id, patterns in registered.items()
                    }
                }
            }
        )
    )
    return [*(path for path in paths if path.is_dir()), registrations]


def gather(client: EvidenceClient, commit: str) -> dict[str, Any]:
    """The commit's run records and every gate record they link (bounded)."""
    runs = client.list_records({"type": "ci.run", "commit": commit})
    gate_records: dict[str, Any] = {}
    ids = {i for run in runs for i in (run.get("details") or {}).get("gate_records", {}).values()}
    for record_id in sorted(ids)[:MAX_LINKED_RECORDS]:
        gate_records[record_id] = client.get(f"/v1/evidence/{record_id}")["record"]
    return {"runs": runs, "gate_records": gate_records}


def promote(
    *,
    evidence_url: str | None,
    commit: str,
    artifact_digest: str,
    environment: str,
    actor: str,
    policy_dir: Path,
    opa: Path,
    client: EvidenceClient | None = None,
    registered_submitters: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Decide by policy and, when allowed, write the promotion record.

    Only records from writers the trust policy accepts count: those in the reviewed
    `policies/trust/` document, plus `registered_submitters` ({client id: [record type
    patterns]}), the run-time registration a test or CI's own stack makes for the client
    it just created. Returns the decision with `evidence_id` set when the promotion was
    recorded. A service or policy failure is a refusal.
    """
    started_at = datetime.now(UTC)
    if client is None:
        built = client_from_env(evidence_url)
        if not isinstance(built, EvidenceClient):
            return {"allow": False, "reasons": ["evidence credentials not configured"]}
        client = built
    try:
        evidence = gather(client, commit)
    except EvidenceWriteError as error:
        return {"allow": False, "reasons": [f"evidence unavailable: {error}"]}
    document = {
        "commit": commit,
        "artifact_digest": artifact_digest,
        "environment": environment,
        "actor": actor,
        **evidence,
    }
    try:
        with tempfile.TemporaryDirectory(prefix="promotion-trust-") as scratch:
            decision: dict[str, Any] = dict(
                evaluate(
                    opa,
                    policy_dir,
                    PROMOTION_QUERY,
                    document,
                    _trust_data(policy_dir, Path(scratch), registered_submitters or {}),
                )
            )
    except PolicyError as error:
        return {"allow": False, "reasons": [str(error)]}
    if not decision["allow"]:
        return decision
    record = {
        "type": "ci.promotion",
        "control_refs": list(PROMOTION_CONTROLS),
        "result": "pass",
        "subject": {
            "commit": commit,
            "artifacts": [{"name": f"image:{environment}", "digest": artifact_digest}],
        },
        "tool": {"name": "moneypath-pipeline", "version": "1"},
        "actor": actor,
        "started_at": _rfc3339(started_at),
        "finished_at": _rfc3339(datetime.now(UTC)),
        "details": {
            "environment": environment,
            "artifact_digest": artifact_digest,
            "run_records": decision["runs"],
            "promoted_by": actor,
        },
    }
    try:
        decision["evidence_id"] = str(client.post("/v1/evidence", record)["id"])
    except EvidenceWriteError as error:
        decision["allow"] = False
        decision["reasons"] = [f"promotion not recorded: {error}"]
    return decision

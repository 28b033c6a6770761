"""Promotion: record who promoted which artifact to which environment, only with evidence.

The evidence service is asked for the commit's run records and the gate records they link;
the Rego policy `moneypath.pipeline.promotion` decides. Every decision is written as a
`ci.promotion` record: `pass` when allowed, `fail` with the reasons when refused, so a
refused attempt leaves a trace too.

`verify_promotion` answers a deploy step's question, "may this digest run?", from evidence
alone: a passing promotion record for the digest, the run it names, the build record that
built the digest, and the build's DSSE-signed provenance naming it, each with its proof.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.platform.utc import rfc3339
from pipeline import provenance
from pipeline.evidence_client import EvidenceClient, client_from_env
from pipeline.policy import PolicyError, evaluate
from pipeline.runner import EvidenceWriteError

PROMOTION_QUERY = "data.moneypath.pipeline.promotion.decision"
PROMOTION_CONTROLS = ("SOC2:CC8.1", "PCI-DSS-4.0.1:6.5.1")
MAX_LINKED_RECORDS = 50
DSSE_ATTACHMENT = "build/provenance.dsse.json"
PROOF_WAIT_S = 60.0
PROOF_POLL_S = 0.5


def gather(client: EvidenceClient, commit: str) -> dict[str, Any]:
    """The commit's run records and every gate record they link (bounded)."""
    runs = client.list_records({"type": "ci.run", "commit": commit})
    gate_records: dict[str, Any] = {}
    ids = {i for run in runs for i in (run.get("details") or {}).get("gate_records", {}).values()}
    for record_id in sorted(ids)[: MAX_LINKED_RECORDS * max(1, len(runs))]:
        gate_records[record_id] = client.get(f"/v1/evidence/{record_id}")["record"]
    return {"runs": runs, "gate_records": gate_records}


def promote(
    *,
    evidence_url: str | None,
    commit: str,
    head_commit: str,
    tree_clean: bool | None,
    artifact_digest: str,
    environment: str,
    actor: str,
    pipeline_client_id: str,
    policy_dir: Path,
    opa: Path,
    client: EvidenceClient | None = None,
) -> dict[str, Any]:
    """Decide by policy and record the decision, allowed or refused.

    Returns the decision with `evidence_id` set to the `ci.promotion` record. A service or
    policy failure is a refusal (recorded when the service can still be written to).
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
        "head_commit": head_commit,
        "tree_clean": tree_clean,
        "artifact_digest": artifact_digest,
        "environment": environment,
        "actor": actor,
        "pipeline_client_id": pipeline_client_id,
        **evidence,
    }
    try:
        decision: dict[str, Any] = dict(evaluate(opa, policy_dir, PROMOTION_QUERY, document))
    except PolicyError as error:
        decision = {"allow": False, "reasons": [str(error)], "runs": []}
    allowed = bool(decision["allow"])
    record = {
        "type": "ci.promotion",
        "control_refs": list(PROMOTION_CONTROLS),
        "result": "pass" if allowed else "fail",
        "subject": {
            "commit": commit,
            "artifacts": [{"name": f"image:{environment}", "digest": artifact_digest}]
            if provenance_digest(artifact_digest)
            else [],
        },
        "tool": {"name": "moneypath-pipeline", "version": "1"},
        "actor": actor,
        "started_at": rfc3339(started_at),
        "finished_at": rfc3339(datetime.now(UTC)),
        "details": {
            "environment": environment[:64],
            "artifact_digest": artifact_digest[:80],
            "run_records": decision["runs"],
            "promoted_by": actor,
            "reasons": [r[:300] for r in decision["reasons"][:30]],
        },
    }
    try:
        decision["evidence_id"] = str(client.post("/v1/evidence", record)["id"])
    except EvidenceWriteError as error:
        decision["allow"] = False
        decision["reasons"] = [*decision["reasons"], f"promotion not recorded: {error}"]
    return decision


def provenance_digest(value: str) -> bool:
    return len(value) == 71 and value.startswith("sha256:")


def _proven(client: EvidenceClient, record_id: str) -> dict[str, Any]:
    """The record with its inclusion proof, waiting (bounded) for a checkpoint to cover it:
    a record written moments ago has none until the next signed checkpoint."""
    deadline = time.monotonic() + PROOF_WAIT_S
    while True:
        proven: dict[str, Any] = client.get(f"/v1/evidence/{record_id}")
        if proven.get("inclusion_proof") or time.monotonic() >= deadline:
            return proven
        time.sleep(PROOF_POLL_S)


def verify_promotion(
    client: EvidenceClient, digest: str, environment: str | None = None
) -> dict[str, Any]:
    """Whether `digest` was promoted (to `environment`, if given), with the proofs.

    Answers from evidence alone. Returns `{"allow", "reasons", "proofs"}`.
    """
    reasons: list[str] = []
    try:
        promotions = [
            p
            for p in client.list_records({"type": "ci.promotion", "result": "pass"})
            if (p.get("details") or {}).get("artifact_digest") == digest
            and environment in (None, (p.get("details") or {}).get("environment"))
        ]
    except EvidenceWriteError as error:
        return {"allow": False, "reasons": [f"evidence unavailable: {error}"], "proofs": []}
    if not promotions:
        return {"allow": False, "reasons": [f"no passing promotion names {digest}"], "proofs": []}
    latest = max(promotions, key=lambda p: int(p.get("seq", 0)))
    proofs = [_proof(_proven(client, str(latest["id"])))]
    for run_id in latest["details"].get("run_records", [])[:1]:
        run = _proven(client, str(run_id))
        proofs.append(_proof(run))
        build_id = (run["record"].get("details") or {}).get("gate_records", {}).get("build")
        if not build_id:
            reasons.append(f"run {run_id} links no build record")
            continue
        build = _proven(client, str(build_id))
        proofs.append(_proof(build))
        reasons += _check_build(client, build["record"], digest)
    if len(proofs) < 3 and not reasons:
        reasons.append("the promotion names no run")
    reasons += [
        f"record {p['id']} is not yet covered by a signed checkpoint"
        for p in proofs
        if not p["inclusion_proof"]
    ]
    return {"allow": not reasons, "reasons": reasons, "proofs": proofs}


def _check_build(client: EvidenceClient, build: dict[str, Any], digest: str) -> list[str]:
    details = build.get("details") or {}
    if digest not in (details.get("outputs") or {}).values():
        return [f"build record {build.get('id')} did not build {digest}"]
    key = details.get("provenance_key") or {}
    envelope_ref = next(
        (a for a in build.get("attachments") or [] if a.get("name") == DSSE_ATTACHMENT), None
    )
    if envelope_ref is None or not key:
        return [f"build record {build.get('id')} holds no signed provenance"]
    stored = client.get(f"/v1/attachments/{envelope_ref['digest']}")
    envelope = json.loads(base64.b64decode(stored["content_base64"]))
    try:
        statement = provenance.verify(envelope, str(key["key_id"]), str(key["public_key_pem"]))
    except ValueError as error:
        return [str(error)]
    named = {"sha256:" + s["digest"]["sha256"] for s in statement.get("subject", [])}
    if digest not in named:
        return [f"the signed provenance does not name {digest}"]
    stamp = build.get("submitted_by") or {}
    if stamp and stamp.get("key_id") != key.get("key_id"):
        return ["the provenance was signed with another key than the record's submitter's"]
    return []


def _proof(proven: dict[str, Any]) -> dict[str, Any]:
    record = proven.get("record") or {}
    return {
        "id": record.get("id"),
        "type": record.get("type"),
        "result": record.get("result"),
        "inclusion_proof": proven.get("inclusion_proof"),
        "checkpoint": proven.get("checkpoint"),
    }

"""Export formats: OSCAL 1.1.2 assessment-results, in-toto Statement v1, and the offline bundle.

Pure functions over records already read; no I/O.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from evidence import records

OSCAL_VERSION = "1.1.2"
BUNDLE_FORMAT = "moneypath-evidence-bundle/v1"
IN_TOTO_STATEMENT = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://moneypath.dev/evidence/record/v1"
PROPERTY_NAMESPACE = "https://moneypath.dev/ns/oscal"
# A fixed namespace: the same record id always yields the same observation uuid.
_UUID_NAMESPACE = uuid.UUID("6f1c9a52-3c55-4d0e-9a0e-9d6f3b7f2a11")
_NOT_TOKEN = re.compile(r"[^A-Za-z0-9_.-]")
_RESULT_STATE = {
    "pass": ("satisfied", "pass"),
    "fail": ("not-satisfied", "fail"),
    "error": ("not-satisfied", "other"),
}


def derived_uuid(kind: str, value: str) -> str:
    return str(uuid.uuid5(_UUID_NAMESPACE, f"{kind}:{value}"))


def control_token(control_ref: str) -> str:
    """OSCAL ids are tokens (no `:`): `PCI-DSS-4.0.1:6.3.3` becomes `PCI-DSS-4.0.1_6.3.3`."""
    token = _NOT_TOKEN.sub("_", control_ref)
    return token if token[:1].isalpha() or token[:1] == "_" else "_" + token


def _prop(name: str, value: str) -> dict[str, str]:
    return {"name": name, "ns": PROPERTY_NAMESPACE, "value": value}


def _writer(record: Mapping[str, Any]) -> str:
    submitter = records.submitter_of(record)
    written_by = (
        f"client {submitter.client_id} (key {submitter.key_id})"
        if submitter is not None
        else "an unrecorded writer"
    )
    return f"submitted by {written_by}, actor {record['actor']}"


def oscal_assessment_results(
    items: Sequence[Mapping[str, Any]],
    *,
    trusted: Collection[str],
    generated_at: datetime,
    collected_from: datetime | None,
    collected_to: datetime | None,
    origin: str,
) -> dict[str, Any]:
    """One observation per record; one finding per control ref with its latest result.

    A control's latest result is its most recent `pass`, `fail` or `error` (by seq) among
    the records in `trusted` (ids of records whose verified writer the trust policy
    accepts for their type). Other records are still observations, marked untrusted, but
    never decide a finding; nor do `info` records. A control with no deciding record is
    `not-satisfied` with reason `other`: nothing trustworthy showed it holds.
    """
    ordered = sorted(items, key=lambda record: int(record["seq"]))
    observations: list[dict[str, Any]] = []
    latest: dict[str, Mapping[str, Any]] = {}
    decisive: dict[str, Mapping[str, Any]] = {}
    for record in ordered:
        observation_uuid = derived_uuid("observation", str(record["id"]))
        is_trusted = str(record["id"]) in trusted
        props = [_prop("result", str(record["result"])), _prop("evidence-type", record["type"])]
        props.extend(_prop("control-ref", ref) for ref in record["control_refs"])
        commit = record.get("subject", {}).get("commit")
        if commit:
            props.append(_prop("commit", commit))
        submitter = records.submitter_of(record)
        if submitter is not None:
            props.append(_prop("submitted-by", submitter.client_id))
            props.append(_prop("submitted-with-key", submitter.key_id))
        props.append(_prop("actor", str(record["actor"])))
        props.append(_prop("trusted-submitter", "true" if is_trusted else "false"))
        observations.append(
            {
                "uuid": observation_uuid,
                "title": f"{record['type']}: {record['result']}",
                "description": f"Evidence record {record['id']} (seq {record['seq']}), "
                f"{_writer(record)}"
                + ("." if is_trusted else "; not a trusted writer of this type."),
                "props": props,
                "methods": ["TEST"],
                "collected": record["collected_at"],
                "relevant-evidence": [
                    {
                        "href": f"/v1/evidence/{record['id']}",
                        "description": "The record with its Merkle inclusion proof.",
                    }
                ],
            }
        )
        for ref in record["control_refs"]:
            latest[ref] = record
            if is_trusted and record["result"] in _RESULT_STATE:
                decisive[ref] = record
    findings: list[dict[str, Any]] = []
    for ref in sorted(latest):
        deciding = decisive.get(ref)
        if deciding is not None:
            state, reason = _RESULT_STATE[str(deciding["result"])]
            description = (
                f"Latest result for {ref}: {deciding['result']} (record {deciding['id']}, "
                f"{_writer(deciding)})."
            )
        else:
            state, reason = ("not-satisfied", "other")
            description = (
                f"No pass, fail or error result for {ref} from a trusted writer; the latest "
                f"record is {latest[ref]['id']} ({_writer(latest[ref])})."
            )
        shown = deciding or latest[ref]
        finding_props = [_prop("control-ref", ref)]
        shown_submitter = records.submitter_of(shown)
        if shown_submitter is not None:
            finding_props.append(_prop("submitted-by", shown_submitter.client_id))
        finding_props.append(_prop("actor", str(shown["actor"])))
        findings.append(
            {
                "uuid": derived_uuid("finding", f"{ref}:{shown['id']}"),
                "title": ref,
                "description": description,
                "props": finding_props,
                "target": {
                    "type": "objective-id",
                    "target-id": control_token(ref),
                    "status": {"state": state, "reason": reason},
                },
                "related-observations": [
                    {"observation-uuid": derived_uuid("observation", str(shown["id"]))}
                ],
            }
        )
    start = collected_from or (
        records.parse_time(ordered[0]["collected_at"]) if ordered else generated_at
    )
    window = f"{records.format_time(start)} to " + (
        records.format_time(collected_to) if collected_to else "now"
    )
    result: dict[str, Any] = {
        "uuid": derived_uuid("result", f"{origin}:{window}:{len(ordered)}"),
        "title": f"Evidence collected {window}",
        "description": f"Every evidence record of log {origin} collected {window}.",
        "start": records.format_time(start),
        "reviewed-controls": {"control-selections": [{"include-all": {}}]},
    }
    if collected_to is not None:
        result["end"] = records.format_time(max(collected_to, start))
    if observations:
        result["observations"] = observations
    if findings:
        result["findings"] = findings
    return {
        "assessment-results": {
            "uuid": derived_uuid("assessment-results", f"{origin}:{window}:{len(ordered)}"),
            "metadata": {
                "title": "moneypath evidence: assessment results",
                "last-modified": records.format_time(generated_at),
                "version": "1.0.0",
                "oscal-version": OSCAL_VERSION,
            },
            "import-ap": {"href": "urn:moneypath:assessment-plan:continuous-controls"},
            "results": [result],
        }
    }


def _digest_set(digest: str) -> dict[str, str]:
    algorithm, _, value = digest.partition(":")
    return {algorithm: value}


def in_toto_statement(
    record: Mapping[str, Any],
    leaf_hash: bytes,
    inclusion_proof: Mapping[str, Any] | None,
    checkpoint: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """An in-toto Statement v1 whose subjects are what the record is about."""
    subject_part = record.get("subject", {})
    subjects: list[dict[str, Any]] = [
        {"name": artifact["name"], "digest": _digest_set(artifact["digest"])}
        for artifact in subject_part.get("artifacts", [])
    ]
    if subject_part.get("commit"):
        subjects.append({"name": "git-commit", "digest": {"gitCommit": subject_part["commit"]}})
    if not subjects:
        # Nothing external to point at: the record itself is the subject.
        canonical = records.canonical_bytes(dict(record))
        subjects.append(
            {"name": str(record["id"]), "digest": {"sha256": hashlib.sha256(canonical).hexdigest()}}
        )
    return {
        "_type": IN_TOTO_STATEMENT,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "record": dict(record),
            "leaf_hash": leaf_hash.hex(),
            "inclusion_proof": dict(inclusion_proof) if inclusion_proof else None,
            "checkpoint": dict(checkpoint) if checkpoint else None,
        },
    }


def bundle_entry(
    record: Mapping[str, Any], leaf_hash: bytes, proof: Mapping[str, Any]
) -> dict[str, Any]:
    return {"record": dict(record), "leaf_hash": leaf_hash.hex(), "inclusion_proof": dict(proof)}


def bundle(
    *,
    collected_from: datetime | None,
    collected_to: datetime | None,
    first_seq: int,
    end_seq: int,
    checkpoint: Mapping[str, Any],
    public_keys: Sequence[Mapping[str, Any]],
    entries: Sequence[Mapping[str, Any]],
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The offline bundle. `before`/`after` are the neighbours just outside the range,
    proven too, so a verifier can tell that no record was cut off at either end."""
    return {
        "format": BUNDLE_FORMAT,
        "range": {
            "from": records.format_time(collected_from) if collected_from else None,
            "to": records.format_time(collected_to) if collected_to else None,
        },
        "first_seq": first_seq,
        "end_seq": end_seq,
        "checkpoint": dict(checkpoint),
        "public_keys": [dict(key) for key in public_keys],
        "records": [dict(entry) for entry in entries],
        "boundary": {
            "before": dict(before) if before else None,
            "after": dict(after) if after else None,
        },
    }

"""The `recon.run` evidence record a run becomes: accepted by the evidence log's own
schema and rules, and the same bytes on every retry."""

from __future__ import annotations

from datetime import UTC, date, datetime

import jsonschema

from app.reconciliation import run_evidence
from app.reconciliation.runs import Run
from evidence import records


def _run(**changes: object) -> Run:
    values: dict[str, object] = {
        "id": "rrn_0123456789abcdef01234567",
        "provider": "acme",
        "settlement_date": date(2026, 11, 30),
        "source": "fetched",
        "file_sha256": "ab" * 32,
        "lines": 10,
        "matched": 9,
        "unmatched_internal": 0,
        "unmatched_provider": 0,
        "amount_mismatches": 0,
        "currency_mismatches": 0,
        "duplicates": 0,
        "pending": 1,
        "started_by": "worker",
        "created_at": datetime(2026, 12, 1, 0, 5, tzinfo=UTC),
        "tolerance_minor": 0,
        "tolerance_days": 1,
        "started_at": datetime(2026, 12, 1, 0, 4, 59, 123456, tzinfo=UTC),
        "finished_at": datetime(2026, 12, 1, 0, 5, tzinfo=UTC),
        "evidence_id": None,
    }
    values.update(changes)
    return Run(**values)  # type: ignore[arg-type]


def test_record_passes_the_evidence_logs_schema_and_rules_when_built_from_a_run() -> None:
    document = run_evidence.document(_run())
    jsonschema.validate(document, records.RECORD_REQUEST_SCHEMA)
    records.prepare_submission(document)  # times in order, exact numbers, size limits
    assert document["type"] == "recon.run"
    assert document["subject"]["artifacts"][0]["digest"] == "sha256:" + "ab" * 32
    assert document["details"]["pending"] == 1


def test_record_passes_when_no_exception_and_fails_when_the_day_has_one() -> None:
    assert run_evidence.document(_run())["result"] == "pass"
    assert run_evidence.document(_run(duplicates=1, matched=8))["result"] == "fail"
    assert run_evidence.document(_run(unmatched_provider=2))["details"]["exceptions"] == 2


def test_record_and_key_are_identical_when_built_again_for_a_retry() -> None:
    run = _run()
    assert run_evidence.document(run) == run_evidence.document(_run())
    assert run_evidence.idempotency_key(run) == f"recon-run-{run.id}"
    other = run_evidence.document(_run(tolerance_minor=5))
    assert other["tool"]["config_digest"] != run_evidence.document(run)["tool"]["config_digest"]

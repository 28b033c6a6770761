"""Evidence record validation, limits and the canonical leaf hash."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from app.platform.errors import ValidationError
from app.platform.jsonbody import parse_and_validate
from evidence import records


def submission(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "sast_scan",
        "control_refs": ["SOC2:CC8.1", "PCI-DSS-4.0.1:6.3.3"],
        "result": "pass",
        "subject": {
            "commit": "a" * 40,
            "artifacts": [{"name": "app.whl", "digest": "sha256:" + "b" * 64}],
        },
        "tool": {"name": "bandit", "version": "1.8.0"},
        "actor": "ci/pipeline",
        "started_at": "2026-11-28T18:00:00Z",
        "finished_at": "2026-11-28T18:00:05.25Z",
        "details": {"issues": 0},
    }
    body.update(changes)
    return body


def parse(body: dict[str, Any]) -> dict[str, Any]:
    return parse_and_validate(json.dumps(body).encode(), records.RECORD_REQUEST_SCHEMA)


def test_valid_submission_passes_when_all_fields_are_well_formed() -> None:
    assert records.prepare_submission(parse(submission()))["type"] == "sast_scan"


@pytest.mark.parametrize(
    "changes",
    [
        {"type": "Not A Type"},
        {"control_refs": []},
        {"control_refs": ["CC8.1"]},
        {"control_refs": ["SOC2:CC8.1", "SOC2:CC8.1"]},
        {"result": "passed"},
        {"subject": {"commit": "xyz"}},
        {"started_at": "2026-11-28 18:00:00"},
        {"unknown": 1},
        {"subject": {"artifacts": [{"name": "x", "digest": "md5:abc"}]}},
    ],
)
def test_submission_is_refused_when_a_field_is_invalid(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse(submission(**changes))


def test_submission_is_refused_when_details_exceed_the_size_limit() -> None:
    body = parse(submission(details={"log": "x" * records.MAX_DETAILS_BYTES}))
    with pytest.raises(records.RecordTooLargeError):
        records.prepare_submission(body)


def test_submission_is_refused_when_details_hold_a_fraction() -> None:
    body = parse(submission())
    body["details"] = {"ratio": Decimal("0.5")}
    with pytest.raises(ValidationError, match="fraction"):
        records.prepare_submission(body)


def test_submission_is_refused_when_finished_before_started() -> None:
    body = parse(submission(finished_at="2026-11-28T17:00:00Z"))
    with pytest.raises(ValidationError, match="finished_at"):
        records.prepare_submission(body)


def test_leaf_hash_is_sha256_of_zero_byte_and_jcs_when_record_is_ascii() -> None:
    record = records.build_record(
        records.prepare_submission(parse(submission())),
        "evd_" + "0" * 32,
        7,
        datetime(2026, 11, 28, 18, 0, 6, tzinfo=UTC),
        records.Submitter("cli_a", "key_a"),
    )
    # For ASCII strings and integers, JCS is sorted keys with no whitespace.
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    assert records.record_leaf_hash(record) == hashlib.sha256(b"\x00" + canonical).digest()
    assert record["collected_at"] == "2026-11-28T18:00:06.000000Z"
    assert record["seq"] == 7
    assert record["submitted_by"] == {"client_id": "cli_a", "key_id": "key_a"}


def test_leaf_hash_changes_when_another_writer_is_named() -> None:
    def leaf(submitter: records.Submitter) -> bytes:
        built = records.build_record(
            records.prepare_submission(parse(submission())),
            "evd_" + "0" * 32,
            7,
            datetime(2026, 11, 28, 18, 0, 6, tzinfo=UTC),
            submitter,
        )
        return records.record_leaf_hash(built)

    assert leaf(records.Submitter("cli_a", "key_a")) != leaf(records.Submitter("cli_b", "key_a"))
    assert leaf(records.Submitter("cli_a", "key_a")) != leaf(records.Submitter("cli_a", "key_b"))


def test_submission_is_refused_when_it_names_its_own_submitter() -> None:
    body = {**parse(submission()), "submitted_by": {"client_id": "cli_x", "key_id": "key_x"}}
    with pytest.raises(ValidationError, match="submitted_by"):
        records.prepare_submission(body)

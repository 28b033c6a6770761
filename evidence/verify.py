"""The offline bundle verifier behind `evidence verify`: no server, no database.

It checks, in order: the checkpoint's Ed25519 signature (against a pinned key when one is
given, else the bundle's own keys), then for every record its canonical leaf hash, its
position and its inclusion proof, and finally that the records are exactly the contiguous
seq range the time window covers, proven at both ends by the neighbouring records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.platform.errors import ValidationError
from evidence import merkle, records
from evidence.checkpoints import (
    CheckpointError,
    key_id_for,
    public_key_from_json,
    verify_checkpoint,
)
from evidence.exports import BUNDLE_FORMAT

MAX_PROBLEMS = 50
MAX_BUNDLE_RECORDS = 1_000_000


@dataclass(slots=True)
class Report:
    records_checked: int = 0
    tree_size: int | None = None
    key_id: str | None = None
    key_pinned: bool = False
    window: str = "[start of log, checkpoint)"
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, problem: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)


def _check_entry(
    entry: Any, expected_seq: int, size: int, root: bytes, report: Report, label: str
) -> Mapping[str, Any] | None:
    """Check one proven record; return the record if it is sound."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("record"), Mapping):
        report.fail(f"{label}: not a record entry")
        return None
    record: Mapping[str, Any] = entry["record"]
    seq = record.get("seq")
    if seq != expected_seq:
        report.fail(f"{label}: record has seq {seq}, expected {expected_seq} (removed or moved)")
        return None
    try:
        leaf = records.record_leaf_hash(record)
    except (ValueError, TypeError) as error:
        report.fail(f"{label}: record cannot be canonicalized ({type(error).__name__})")
        return None
    if leaf.hex() != entry.get("leaf_hash"):
        report.fail(f"{label} (seq {seq}): content does not match its leaf hash (modified)")
        return None
    proof = entry.get("inclusion_proof")
    if not isinstance(proof, Mapping):
        report.fail(f"{label} (seq {seq}): no inclusion proof")
        return None
    if proof.get("leaf_index") != seq or proof.get("tree_size") != size:
        report.fail(f"{label} (seq {seq}): proof is for another leaf or tree size")
        return None
    try:
        hashes = [bytes.fromhex(str(item)) for item in proof.get("hashes", [])]
        merkle.verify_inclusion(seq, size, leaf, hashes, root)
    except (ValueError, TypeError) as error:
        report.fail(f"{label} (seq {seq}): inclusion proof fails ({error})")
        return None
    return record


def _time(value: Any, report: Report, label: str) -> datetime | None:
    try:
        return records.parse_time(str(value))
    except ValidationError:
        report.fail(f"{label}: {value!r} is not an RFC 3339 time")
        return None


def verify_bundle(bundle: Any, pinned_keys: Sequence[bytes] = ()) -> Report:
    """Verify a bundle from `evidence export`; every problem found goes into the report."""
    report = Report()
    if not isinstance(bundle, Mapping) or bundle.get("format") != BUNDLE_FORMAT:
        report.fail(f"not a {BUNDLE_FORMAT} document")
        return report
    keys: dict[str, bytes] = {}
    if pinned_keys:
        report.key_pinned = True
        keys = {key_id_for(raw): raw for raw in pinned_keys}
    else:
        for entry in bundle.get("public_keys") or []:
            try:
                raw = public_key_from_json(entry)
            except (CheckpointError, ValueError, TypeError):
                report.fail("bundle holds an unreadable public key")
                continue
            keys[key_id_for(raw)] = raw
    checkpoint = bundle.get("checkpoint")
    if not isinstance(checkpoint, Mapping):
        report.fail("bundle has no checkpoint")
        return report
    try:
        root = verify_checkpoint(checkpoint, keys)
    except CheckpointError as error:
        report.fail(f"checkpoint: {error} (forged or altered)")
        return report
    size = int(checkpoint["size"])
    report.tree_size = size
    report.key_id = str(checkpoint["key_id"])

    first_seq, end_seq = bundle.get("first_seq"), bundle.get("end_seq")
    entries = bundle.get("records")
    if not (
        isinstance(first_seq, int)
        and isinstance(end_seq, int)
        and isinstance(entries, list)
        and 0 <= first_seq <= end_seq <= size
    ):
        report.fail("bundle's seq range is malformed or beyond the checkpoint")
        return report
    if len(entries) > MAX_BUNDLE_RECORDS:
        report.fail(f"bundle holds more than {MAX_BUNDLE_RECORDS} records")
        return report
    if len(entries) != end_seq - first_seq:
        report.fail(
            f"bundle claims seq [{first_seq}, {end_seq}) but holds {len(entries)} records "
            "(removed or added)"
        )
    window = bundle.get("range") or {}
    low = _time(window["from"], report, "range.from") if window.get("from") else None
    high = _time(window["to"], report, "range.to") if window.get("to") else None
    # The window is not signed: the verifier proves the bundle complete for the window it
    # states, so the caller must compare that window with the one they asked for.
    report.window = f"[{window.get('from') or 'start of log'}, {window.get('to') or 'checkpoint'})"

    previous: datetime | None = None
    for position, entry in enumerate(entries):
        record = _check_entry(
            entry, first_seq + position, size, root, report, f"record #{position}"
        )
        if record is None:
            continue
        report.records_checked += 1
        collected = _time(record.get("collected_at"), report, f"record #{position}")
        if collected is None:
            continue
        if (low is not None and collected < low) or (high is not None and collected >= high):
            report.fail(f"record #{position}: collected_at lies outside the bundle's range")
        if previous is not None and collected < previous:
            report.fail(f"record #{position}: collected_at goes backwards (reordered)")
        previous = collected

    boundary = bundle.get("boundary") or {}
    # Completeness at the start: either the log starts here, or the record just before
    # is proven and falls before `from`.
    if first_seq > 0:
        before = boundary.get("before")
        record = _check_entry(before, first_seq - 1, size, root, report, "boundary.before")
        if record is not None:
            at = _time(record.get("collected_at"), report, "boundary.before")
            if low is None or (at is not None and at >= low):
                report.fail("records before the range were cut off (boundary.before is inside)")
    if end_seq < size:
        after = boundary.get("after")
        record = _check_entry(after, end_seq, size, root, report, "boundary.after")
        if record is not None:
            at = _time(record.get("collected_at"), report, "boundary.after")
            if high is None or (at is not None and at < high):
                report.fail("records at the end of the range were cut off")
    return report

"""The evidence log against real PostgreSQL and OpenBao: append-only storage, the Merkle
log, signed checkpoints, proofs, queries and exports.

The acceptance check for inclusion proofs uses `rfc9162_verify_inclusion` below, written
from RFC 9162 §2.1.3.2 independently of `evidence.merkle`.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import secrets
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from trestle.oscal.assessment_results import AssessmentResults

from app.entrypoints.devstack import Stack
from app.platform.settings import VaultLogin
from app.platform.vault import Vault
from evidence import attachments, checkpoints, exports, merkle, records, service, tree
from evidence.checkpointer import Checkpointer
from evidence.signing import TransitSigner
from evidence.verify import verify_bundle
from tests.support.evidence_data import (
    BASE_TIME,
    SUBMITTER,
    collected_time,
    fresh_database,
    run_with_sessions,
    signer,
    submission,
)

LOG_SIZE = 10_000
FIRST_CHECKPOINT = 6_137
ORIGIN = "test.moneypath.dev/evidence"


def rfc9162_verify_inclusion(
    leaf_index: int, tree_size: int, leaf: bytes, path: list[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2, step by step."""
    if leaf_index >= tree_size:
        return False
    fn, sn = leaf_index, tree_size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def independent_leaf(record: dict[str, Any]) -> bytes:
    return hashlib.sha256(b"\x00" + rfc8785.dumps(record)).digest()


def reference_mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH, bottom-up over levels (RFC 6962's odd node promotion)."""
    level = list(leaves)
    while len(level) > 1:
        paired = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


class Log:
    """A fresh 10,000-record log with two checkpoints, shared by this module's tests."""

    def __init__(self, url: str, signer: TransitSigner) -> None:
        self.url = url
        self.signer = signer
        self.first: checkpoints.Checkpoint | None = None
        self.second: checkpoints.Checkpoint | None = None


async def _fill(sessions: async_sessionmaker[AsyncSession], start: int, end: int) -> None:
    for batch in range(start, end, 500):
        async with sessions() as session, session.begin():
            for i in range(batch, min(batch + 500, end)):
                await service.append(
                    session, submission(i), submitter=SUBMITTER, now=collected_time(i)
                )


@pytest.fixture(scope="module")
def log(stack: Stack) -> Iterator[Log]:
    made = Log(fresh_database(stack), signer(stack))

    async def build(sessions: async_sessionmaker[AsyncSession]) -> None:
        await _fill(sessions, 0, FIRST_CHECKPOINT)
        made.first = await tree.issue_checkpoint(sessions, made.signer, ORIGIN)
        await _fill(sessions, FIRST_CHECKPOINT, LOG_SIZE)
        made.second = await tree.issue_checkpoint(sessions, made.signer, ORIGIN)

    run_with_sessions(made.url, build)
    return made


def _all_records(url: str) -> list[service.StoredRecord]:
    async def read(sessions: async_sessionmaker[AsyncSession]) -> list[service.StoredRecord]:
        async with sessions() as session:
            return await service.records_in_seq_range(session, 0, 10**9)

    return run_with_sessions(url, read)


def _public_keys(made: TransitSigner) -> dict[str, bytes]:
    return {key.key_id: key.raw for key in made.refresh()}


# ---- acceptance: Merkle proofs --------------------------------------------------------


def test_every_record_proves_inclusion_against_the_signed_checkpoint_when_log_has_10000(
    log: Log,
) -> None:
    assert log.second is not None
    checkpoint = log.second.as_json()
    root = checkpoints.verify_checkpoint(checkpoint, _public_keys(log.signer))
    assert checkpoint["size"] == LOG_SIZE
    assert checkpoint["note"] == (f"{ORIGIN}\n{LOG_SIZE}\n{base64.b64encode(root).decode()}\n")
    stored = _all_records(log.url)
    assert [item.seq for item in stored] == list(range(LOG_SIZE))
    leaves = [independent_leaf(item.record) for item in stored]
    assert leaves == [item.leaf_hash for item in stored]
    assert reference_mth(leaves) == root

    async def prove(sessions: async_sessionmaker[AsyncSession]) -> dict[int, list[bytes]]:
        proofs: dict[int, list[bytes]] = {}
        async with sessions() as session:
            for start in range(0, LOG_SIZE, 2000):
                indexes = list(range(start, min(start + 2000, LOG_SIZE)))
                proofs.update(await tree.inclusion_proofs(session, indexes, LOG_SIZE))
        return proofs

    proofs = run_with_sessions(log.url, prove)
    failures = [
        index
        for index in range(LOG_SIZE)
        if not rfc9162_verify_inclusion(index, LOG_SIZE, leaves[index], proofs[index], root)
    ]
    assert failures == []
    # And the independent verifier does reject a proof for the wrong leaf.
    assert not rfc9162_verify_inclusion(5, LOG_SIZE, leaves[6], proofs[5], root)


def test_consistency_proof_between_two_checkpoints_checks_when_log_grew(log: Log) -> None:
    assert log.first is not None
    assert log.second is not None
    keys = _public_keys(log.signer)
    first_root = checkpoints.verify_checkpoint(log.first.as_json(), keys)
    second_root = checkpoints.verify_checkpoint(log.second.as_json(), keys)
    leaves = [item.leaf_hash for item in _all_records(log.url)]
    assert reference_mth(leaves[:FIRST_CHECKPOINT]) == first_root

    async def prove(sessions: async_sessionmaker[AsyncSession]) -> list[bytes]:
        async with sessions() as session:
            return await tree.consistency(session, FIRST_CHECKPOINT, LOG_SIZE)

    proof = run_with_sessions(log.url, prove)
    merkle.verify_consistency(FIRST_CHECKPOINT, LOG_SIZE, first_root, second_root, proof)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(FIRST_CHECKPOINT, LOG_SIZE, leaves[0], second_root, proof)


def test_consistency_is_refused_when_second_exceeds_latest_checkpoint(log: Log) -> None:
    async def prove(sessions: async_sessionmaker[AsyncSession]) -> list[bytes]:
        async with sessions() as session:
            return await tree.consistency(session, 10, LOG_SIZE + 1)

    with pytest.raises(tree.TreeSizeError):
        run_with_sessions(log.url, prove)


# ---- append-only ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE evidence.records SET result = 'pass' WHERE seq = 3",
        "DELETE FROM evidence.records WHERE seq = 3",
        "TRUNCATE evidence.records CASCADE",
        "UPDATE evidence.tree_nodes SET hash = hash WHERE level = 0 AND index = 3",
        "DELETE FROM evidence.checkpoints",
        "UPDATE evidence.record_controls SET control = 'SOC2:CC1.1' WHERE seq = 3",
        "UPDATE evidence.log_state SET size = 5",
        "DELETE FROM evidence.log_state",
    ],
)
def test_raw_sql_change_is_refused_when_it_touches_the_log(log: Log, statement: str) -> None:
    async def change(sessions: async_sessionmaker[AsyncSession]) -> None:
        async with sessions() as session, session.begin():
            await session.execute(text(statement))

    with pytest.raises(DBAPIError) as caught:
        run_with_sessions(log.url, change)
    assert getattr(caught.value.orig, "sqlstate", None) == "42501"


# ---- queries --------------------------------------------------------------------------


def _query_all(url: str, filters: service.Filters, limit: int) -> list[dict[str, Any]]:
    async def walk(sessions: async_sessionmaker[AsyncSession]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after: int | None = None
        async with sessions() as session:
            for _ in range(10_000):
                page, last = await service.query(session, filters, after, limit)
                found.extend(page)
                if last is None:
                    return found
                after = last
        raise AssertionError("pagination did not end")

    return run_with_sessions(url, walk)


def test_query_matches_brute_force_when_filtering_control_and_time_range(log: Log) -> None:
    stored = [item.record for item in _all_records(log.url)]
    start, end = collected_time(1234) - timedelta(milliseconds=1), collected_time(4321)
    filters = service.Filters(control="SOC2:CC8.1", collected_from=start, collected_to=end)
    expected = [
        record["seq"]
        for record in stored
        if "SOC2:CC8.1" in record["control_refs"]
        and start <= records.parse_time(record["collected_at"]) < end
    ]
    got = [record["seq"] for record in _query_all(log.url, filters, 97)]
    assert got == expected
    assert expected
    assert expected[0] >= 1234
    assert expected[-1] < 4321


@pytest.mark.parametrize(
    "filters",
    [
        service.Filters(type="iac_scan"),
        service.Filters(result="fail", commit=f"{3:040x}"),
        service.Filters(control="ISO27001:A.8.32", type="sast_scan", result="error"),
        service.Filters(collected_to=collected_time(10)),
    ],
)
def test_query_matches_brute_force_when_combining_filters(
    log: Log, filters: service.Filters
) -> None:
    stored = [item.record for item in _all_records(log.url)]

    def keep(record: dict[str, Any]) -> bool:
        at = records.parse_time(record["collected_at"])
        return (
            (filters.control is None or filters.control in record["control_refs"])
            and (filters.type is None or record["type"] == filters.type)
            and (filters.result is None or record["result"] == filters.result)
            and (filters.commit is None or record["subject"].get("commit") == filters.commit)
            and (filters.collected_to is None or at < filters.collected_to)
        )

    expected = [record["seq"] for record in stored if keep(record)]
    assert expected
    assert [record["seq"] for record in _query_all(log.url, filters, 200)] == expected


# ---- exports --------------------------------------------------------------------------


def _export(
    log: Log, start_index: int, end_index: int, max_records: int = 10_000
) -> dict[str, Any]:
    filters = service.Filters(
        collected_from=collected_time(start_index), collected_to=collected_time(end_index)
    )
    keys = [key.as_json() for key in log.signer.public_keys()]

    async def export(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any] | None:
        async with sessions() as session:
            return await service.export_bundle(session, filters, max_records, keys)

    bundle = run_with_sessions(log.url, export)
    assert bundle is not None
    return json.loads(json.dumps(bundle))


def test_oscal_export_validates_with_trestle_when_range_has_many_records(log: Log) -> None:
    async def read(sessions: async_sessionmaker[AsyncSession]) -> list[dict[str, Any]]:
        async with sessions() as session:
            return await service.records_for_export(
                session,
                service.Filters(
                    collected_from=collected_time(100), collected_to=collected_time(400)
                ),
                10_000,
            )

    items = run_with_sessions(log.url, read)
    # Every record but every fifth counts; the untrusted ones must not decide a finding.
    trusted = {record["id"] for record in items if record["seq"] % 5 != 0}
    document = exports.oscal_assessment_results(
        items,
        trusted=trusted,
        generated_at=BASE_TIME + timedelta(days=1),
        collected_from=collected_time(100),
        collected_to=collected_time(400),
        origin=ORIGIN,
    )
    parsed = AssessmentResults.model_validate(document["assessment-results"])
    result = parsed.results[0]
    assert result.observations is not None
    assert len(result.observations) == 300
    assert parsed.metadata.oscal_version.root.root == exports.OSCAL_VERSION
    observation = document["assessment-results"]["results"][0]["observations"][0]
    assert observation["methods"] == ["TEST"]
    assert observation["relevant-evidence"][0]["href"] == f"/v1/evidence/{items[0]['id']}"
    assert observation["uuid"] == exports.derived_uuid("observation", items[0]["id"])
    # One finding per control, holding the control's latest decisive trusted result.
    latest: dict[str, str] = {}
    for record in items:
        for ref in record["control_refs"]:
            if record["result"] != "info" and record["id"] in trusted:
                latest[ref] = record["result"]
    findings = {
        finding["title"]: finding["target"]["status"]["state"]
        for finding in document["assessment-results"]["results"][0]["findings"]
    }
    assert findings == {
        ref: "satisfied" if result == "pass" else "not-satisfied" for ref, result in latest.items()
    }


def test_oscal_export_fails_trestle_when_a_required_field_is_missing(log: Log) -> None:
    document = exports.oscal_assessment_results(
        [],
        trusted=(),
        generated_at=BASE_TIME,
        collected_from=None,
        collected_to=None,
        origin=ORIGIN,
    )
    del document["assessment-results"]["results"][0]["reviewed-controls"]
    with pytest.raises(ValueError):
        AssessmentResults.model_validate(document["assessment-results"])


def test_in_toto_statement_names_artifacts_and_commit_when_record_has_both(log: Log) -> None:
    item = _all_records(log.url)[42]
    statement = exports.in_toto_statement(item.record, item.leaf_hash, None, None)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"] == [
        {"name": "artifact-42.whl", "digest": {"sha256": f"{42:064x}"}},
        {"name": "git-commit", "digest": {"gitCommit": item.record["subject"]["commit"]}},
    ]
    assert statement["predicate"]["record"] == item.record


# ---- offline verifier -----------------------------------------------------------------


def test_bundle_verifies_offline_when_untouched(log: Log) -> None:
    bundle = _export(log, 2000, 2600)
    report = verify_bundle(bundle)
    assert report.ok, report.problems
    assert report.records_checked == 600
    assert bundle["boundary"]["before"]["record"]["seq"] == 1999
    assert bundle["boundary"]["after"]["record"]["seq"] == 2600


def test_verify_detects_a_record_passed_off_as_another_writers(log: Log) -> None:
    bundle = _export(log, 2000, 2100)
    assert verify_bundle(bundle).ok
    bundle["records"][3]["record"]["submitted_by"]["client_id"] = "cli_someone_else"
    report = verify_bundle(bundle)
    assert not report.ok
    assert any("record #3" in problem for problem in report.problems)


def test_verify_detects_a_modified_record(log: Log) -> None:
    bundle = _export(log, 2000, 2100)
    bundle["records"][10]["record"]["result"] = (
        "pass" if bundle["records"][10]["record"]["result"] != "pass" else "fail"
    )
    report = verify_bundle(bundle)
    assert not report.ok
    assert any("modified" in problem for problem in report.problems)
    # Re-hashing the modified record does not help: the proof no longer reaches the root.
    bundle["records"][10]["leaf_hash"] = independent_leaf(bundle["records"][10]["record"]).hex()
    assert any("inclusion proof fails" in p for p in verify_bundle(bundle).problems)


@pytest.mark.parametrize("position", [0, 50, 99])
def test_verify_detects_a_removed_record(log: Log, position: int) -> None:
    bundle = _export(log, 2000, 2100)
    del bundle["records"][position]
    report = verify_bundle(bundle)
    assert not report.ok
    assert any("removed" in problem for problem in report.problems)


@pytest.mark.parametrize("end", ["first", "last"])
def test_verify_detects_a_record_cut_off_when_the_claimed_range_is_shrunk(
    log: Log, end: str
) -> None:
    bundle = _export(log, 2000, 2100)
    if end == "first":
        del bundle["records"][0]
        bundle["first_seq"] += 1
    else:
        del bundle["records"][-1]
        bundle["end_seq"] -= 1
    report = verify_bundle(bundle)
    assert not report.ok
    # Either the neighbour no longer sits next to the range, or it lies inside the window.
    assert any("boundary" in problem or "cut off" in problem for problem in report.problems)


def test_verify_detects_reordered_records(log: Log) -> None:
    bundle = _export(log, 2000, 2100)
    entries = bundle["records"]
    entries[20], entries[21] = entries[21], entries[20]
    report = verify_bundle(bundle)
    assert not report.ok
    assert any("expected" in problem for problem in report.problems)


def test_verify_detects_a_forged_checkpoint(log: Log) -> None:
    bundle = _export(log, 2000, 2100)
    pinned = [key.raw for key in log.signer.public_keys()]
    assert verify_bundle(bundle, pinned).ok
    # A forger who re-signs with their own key (and ships it) fails against the pinned key.
    forger = Ed25519PrivateKey.generate()
    forged = copy.deepcopy(bundle)
    forged_root = hashlib.sha256(b"forged").digest()
    forged["checkpoint"]["root_hash"] = forged_root.hex()
    forged["checkpoint"]["note"] = checkpoints.note_text(
        ORIGIN, forged["checkpoint"]["size"], forged_root
    )
    raw = forger.public_key().public_bytes_raw()
    forged["checkpoint"]["key_id"] = checkpoints.key_id_for(raw)
    forged["checkpoint"]["signature"] = base64.b64encode(
        forger.sign(forged["checkpoint"]["note"].encode())
    ).decode()
    assert not verify_bundle(forged, pinned).ok
    # A checkpoint altered without re-signing fails even against the bundle's own keys.
    altered = copy.deepcopy(bundle)
    altered["checkpoint"]["root_hash"] = forged_root.hex()
    altered["checkpoint"]["note"] = forged["checkpoint"]["note"]
    report = verify_bundle(altered)
    assert not report.ok
    assert "forged" in report.problems[0]


# ---- checkpoints and concurrency ------------------------------------------------------


def test_seq_has_no_gaps_when_appends_run_concurrently(stack: Stack) -> None:
    url = fresh_database(stack)

    async def hammer(sessions: async_sessionmaker[AsyncSession]) -> list[int]:
        async def one(i: int) -> int:
            async with sessions() as session, session.begin():
                return (await service.append(session, submission(i), submitter=SUBMITTER)).seq

        return list(await asyncio.gather(*(one(i) for i in range(60))))

    seqs = run_with_sessions(url, hammer)
    assert sorted(seqs) == list(range(60))
    stored = _all_records(url)
    assert [item.seq for item in stored] == list(range(60))
    times = [records.parse_time(item.record["collected_at"]) for item in stored]
    assert times == sorted(times)


def test_checkpointer_signs_when_n_records_are_pending_and_when_t_elapses(stack: Stack) -> None:
    url = fresh_database(stack)
    made = signer(stack)

    async def scenario(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int, int]:
        by_count = Checkpointer(sessions, made, ORIGIN, every_records=5, interval_ms=3_600_000)
        by_count.start()
        try:
            await asyncio.sleep(0.3)  # the first tick finds an empty log
            async with sessions() as session, session.begin():
                for i in range(5):
                    seq = (await service.append(session, submission(i), submitter=SUBMITTER)).seq
            by_count.appended(seq)
            for _ in range(50):
                async with sessions() as session:
                    latest = await tree.latest_checkpoint(session)
                if latest is not None:
                    break
                await asyncio.sleep(0.1)
        finally:
            await by_count.stop()
        count_size = latest.size if latest else 0
        by_time = Checkpointer(sessions, made, ORIGIN, every_records=1000, interval_ms=200)
        by_time.start()
        try:
            async with sessions() as session, session.begin():
                await service.append(session, submission(5), submitter=SUBMITTER)
            await asyncio.sleep(1.0)
            async with sessions() as session:
                latest = await tree.latest_checkpoint(session)
                size_now = await service.log_size(session)
        finally:
            await by_time.stop()
        return count_size, latest.size if latest else 0, size_now

    count_size, time_size, size_now = run_with_sessions(url, scenario)
    assert count_size == 5
    assert time_size == size_now == 6


def test_checkpoints_signed_before_and_after_key_rotation_both_verify(stack: Stack) -> None:
    url = fresh_database(stack)
    made = signer(stack, f"evidence-rotation-{secrets.token_hex(3)}")

    async def scenario(
        sessions: async_sessionmaker[AsyncSession],
    ) -> list[checkpoints.Checkpoint | None]:
        issued: list[checkpoints.Checkpoint | None] = []
        for round_ in range(2):
            async with sessions() as session, session.begin():
                await service.append(session, submission(round_), submitter=SUBMITTER)
            issued.append(await tree.issue_checkpoint(sessions, made, ORIGIN))
            if round_ == 0:
                made.rotate()
        return issued

    before, after = run_with_sessions(url, scenario)
    assert before is not None
    assert after is not None
    keys = made.refresh()
    assert [key.version for key in keys] == [2, 1]
    assert keys[0].current
    assert not keys[1].current
    published = {key.key_id: key.raw for key in keys}
    assert before.key_id == keys[1].key_id
    assert after.key_id == keys[0].key_id
    checkpoints.verify_checkpoint(before.as_json(), published)
    checkpoints.verify_checkpoint(after.as_json(), published)


def test_attachment_is_stored_by_digest_and_refused_when_too_large(stack: Stack) -> None:
    url = fresh_database(stack)
    content = b'{"scanner": "bandit", "results": []}'

    async def scenario(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
        async with sessions() as session, session.begin():
            stored = await attachments.store_attachment(
                session, "application/json", base64.b64encode(content).decode(), 1024
            )
            again = await attachments.store_attachment(
                session, "application/json", base64.b64encode(content).decode(), 1024
            )
            assert again == stored
            with_attachment = submission(1, attachments=[{"name": "r", "digest": stored["digest"]}])
            await service.append(session, with_attachment, submitter=SUBMITTER)
            with pytest.raises(attachments.AttachmentTooLargeError):
                await attachments.store_attachment(
                    session, "text/plain", base64.b64encode(b"x" * 1025).decode(), 1024
                )
            unknown = submission(2, attachments=[{"name": "r", "digest": "sha256:" + "0" * 64}])
            with pytest.raises(service.UnknownAttachmentError):
                await service.append(session, unknown, submitter=SUBMITTER)
        async with sessions() as session:
            return await attachments.get_attachment(session, stored["digest"])

    fetched = run_with_sessions(url, scenario)
    assert fetched["digest"] == "sha256:" + hashlib.sha256(content).hexdigest()
    assert base64.b64decode(fetched["content_base64"]) == content


# ---- the CLI --------------------------------------------------------------------------


def test_cli_export_then_verify_round_trips_and_fails_on_tampering(
    stack: Stack, tmp_path: Path
) -> None:
    # The CLI finds the service's own database through OpenBao, as the service does.
    vault = Vault.login(stack.vault_addr, VaultLogin(token="moneypath-dev-root"))
    # The bootstrap migrated it as the owner; the service's role could not.
    url = str((vault.read_secret("moneypath/evidence-database") or {})["url"])

    async def fill(sessions: async_sessionmaker[AsyncSession]) -> None:
        async with sessions() as session, session.begin():
            for i in range(3):
                await service.append(session, submission(i), submitter=SUBMITTER)

    run_with_sessions(url, fill)
    env = {**stack.app_env(), "PATH": "/usr/bin:/bin"}
    evidence_cli = [sys.executable, "-m", "evidence.cli"]
    subprocess.run([*evidence_cli, "checkpoint"], env=env, check=True, timeout=60)
    exported = subprocess.run(
        [*evidence_cli, "export", "--from", "2000-01-01T00:00:00Z"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert exported.returncode == 0, exported.stderr
    bundle_path = tmp_path / "bundle.json"
    bundle_path.write_text(exported.stdout)
    verified = subprocess.run(
        [*evidence_cli, "verify", str(bundle_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("OK:")
    bundle = json.loads(exported.stdout)
    bundle["records"][0]["record"]["actor"] = "someone else"
    bundle_path.write_text(json.dumps(bundle))
    tampered = subprocess.run(
        [*evidence_cli, "verify", str(bundle_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert tampered.returncode == 1
    assert "modified" in tampered.stderr

    # A forger who re-signs the head and swaps in their own key passes only unpinned.
    forged = json.loads(exported.stdout)
    forger = Ed25519PrivateKey.generate()
    raw = forger.public_key().public_bytes_raw()
    forged["checkpoint"]["key_id"] = checkpoints.key_id_for(raw)
    forged["checkpoint"]["signature"] = base64.b64encode(
        forger.sign(forged["checkpoint"]["note"].encode())
    ).decode()
    forged["public_keys"] = [
        checkpoints.PublicKey(checkpoints.key_id_for(raw), raw, 1, True).as_json()
    ]
    bundle_path.write_text(json.dumps(forged))
    published = signer(stack, "evidence-checkpoint").public_keys()
    key_path = tmp_path / "public-key.json"
    key_path.write_text(json.dumps({"keys": [key.as_json() for key in published]}))
    pinned = subprocess.run(
        [*evidence_cli, "verify", str(bundle_path), "--key", str(key_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert pinned.returncode == 1
    assert "checkpoint" in pinned.stderr
    unpinned = subprocess.run(
        [*evidence_cli, "verify", str(bundle_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unpinned.returncode == 0
    assert "use --key to pin" in unpinned.stdout


def test_counts_of_filtered_fixture_are_spread_over_every_value(log: Log) -> None:
    # Guards the other query tests: the fixture must exercise every filter value.
    stored = [item.record for item in _all_records(log.url)]
    assert len(Counter(record["type"] for record in stored)) == 4
    assert len(Counter(record["result"] for record in stored)) == 4

"""Issue 13: every reconciliation run leaves a signed `recon.run` record in the evidence
log, also when the evidence service was down at the time; and the lag gauge is the age of
the oldest provider transaction no run has reconciled.

Against the real PostgreSQL, OPA, OpenBao, API (token issuer) and evidence service. The
payments are seeded straight into the payments tables on days far back (no other test
books there), and the settlement files are written in acme's format.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

import httpx
import psycopg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.entrypoints import anchors
from app.entrypoints.devstack import DEV_ROOT_TOKEN, Stack
from app.platform.db import create_engine, session_factory
from app.platform.settings import VaultLogin
from app.platform.vault import Vault
from app.reconciliation import api as reconciliation_api
from app.reconciliation import domain, lag, runs
from tests.support.api_client import ApiClient, ClientFactory

T = TypeVar("T")
HEADER = "settlement_date,line,type,charge_ids,operation_id,amount,fee,net,currency\n"


def _today() -> date:
    return datetime.now(UTC).date()


def _at(day: date, hour: int) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=hour)


def _seed(stack: Stack, provider: str, captures: list[tuple[str, int, datetime]]) -> None:
    """Captured payments at `provider`: (charge id, amount, when the capture finished)."""
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        for charge, amount, at in captures:
            payment = "pay_" + secrets.token_hex(8)
            connection.execute(
                "INSERT INTO payments.payments (id, owner, request_key, customer_id,"
                " merchant_account_id, amount_minor, currency, capture_mode, token, status,"
                " provider, provider_ref, hold_transaction_id, captured_minor) VALUES"
                " (%s, 'cli_recon_test', %s, 'cus_t', 'acc_t', %s, 'USD', 'automatic', 'tok',"
                " 'captured', %s, %s, %s, %s)",
                (payment, payment, amount, provider, charge, "txn_" + payment, amount),
            )
            connection.execute(
                "INSERT INTO payments.steps (saga_id, name, status, provider, provider_ref,"
                " amount_minor, finished_at) VALUES (%s, 'capture', 'succeeded', %s, %s, %s, %s)",
                (payment, provider, "op_" + charge, amount, at),
            )


def _file(day: date, lines: list[tuple[str, int]]) -> bytes:
    rows = [
        f"{day.isoformat()},{n},CAPTURE,{charge},op_{charge},{amount},0,{amount},USD\n"
        for n, (charge, amount) in enumerate(lines, start=1)
    ]
    return (HEADER + "".join(rows)).encode()


def _run(stack: Stack, make: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T:
    async def main() -> T:
        assert stack.database_url is not None
        engine = create_engine(stack.database_url, pool_size=2)
        try:
            return await make(session_factory(engine))
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _vault(stack: Stack) -> Vault:
    return Vault.login(stack.vault_addr, VaultLogin(token=DEV_ROOT_TOKEN))


def _evidence_client(stack: Stack, evidence_url: str) -> anchors.EvidenceClient:
    client = anchors.recon_evidence_client(
        _vault(stack), evidence_url=evidence_url, issuer_url=stack.api_url
    )
    assert client is not None, "the bootstrap registers reconciliation's evidence client"
    return client


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def auditor(live_stack: Stack, client_factory: ClientFactory) -> Iterator[ApiClient]:
    with (
        httpx.Client(base_url=live_stack.api_url, timeout=10) as api_http,
        httpx.Client(base_url=live_stack.evidence_url, timeout=10) as evidence_http,
    ):
        client = client_factory(scopes=["evidence:read"], http=api_http)
        client.token()
        client.http = evidence_http
        yield client


def _reconcile(stack: Stack, day: date, data: bytes, *, evidence_url: str) -> runs.Run:
    """A new run of acme's `day` that sends its record to `evidence_url`, then the metrics
    refresh the worker's cycle does after its runs (the gauges are the worker's alone)."""

    async def scenario(sessions: async_sessionmaker[AsyncSession]) -> runs.Run:
        client = _evidence_client(stack, evidence_url)
        try:
            run, created = await reconciliation_api.reconcile_day(
                sessions, None, "acme", day, started_by="test", data=data, evidence=client
            )
        finally:
            await client.aclose()
        assert created
        await reconciliation_api.refresh_metrics(sessions, "acme")
        return run

    return _run(stack, scenario)


def _unique_charges(count: int) -> list[str]:
    return [f"ch_it_{secrets.token_hex(6)}" for _ in range(count)]


def test_run_writes_signed_recon_run_record_with_counts_and_file_digest_when_evidence_is_up(
    live_stack: Stack, auditor: ApiClient
) -> None:
    day = _today() - timedelta(days=60)
    good, short = _unique_charges(2)
    _seed(live_stack, "acme", [(good, 1500, _at(day, 9)), (short, 2500, _at(day, 10))])
    data = _file(day, [(good, 1500), (short, 2400), ("ch_unknown_" + good, 700)])

    run = _reconcile(live_stack, day, data, evidence_url=live_stack.evidence_url)
    assert run.evidence_id is not None
    stored = auditor.get(f"/v1/evidence/{run.evidence_id}")
    assert stored.status_code == 200, stored.text
    record = stored.json()["record"]
    assert record["type"] == "recon.run"
    assert record["control_refs"] == ["SOC2:PI1.3", "SOC2:CC7.2", "SOC2:CC4.1"]
    assert record["result"] == "fail"  # an amount mismatch and an unknown line
    digest = hashlib.sha256(data).hexdigest()
    assert record["subject"]["artifacts"] == [
        {"name": f"settlement/acme/{day.isoformat()}.csv", "digest": "sha256:" + digest}
    ]
    details = record["details"]
    assert details["file_sha256"] == digest == run.file_sha256
    assert (details["run_id"], details["lines"], details["matched"]) == (run.id, 3, 1)
    assert (details["amount_mismatches"], details["unmatched_internal"]) == (1, 1)
    assert details["exceptions"] == 2
    recon_client = anchors.credentials_from_vault(_vault(live_stack), anchors.RECON_CLIENT_SECRET)
    assert recon_client is not None
    assert record["submitted_by"]["client_id"] == recon_client.client_id
    listed = auditor.get("/v1/evidence", params={"type": "recon.run", "control": "SOC2:PI1.3"})
    assert run.evidence_id in {item["id"] for item in listed.json()["data"]}


def test_run_completes_and_its_record_is_written_later_when_the_evidence_service_is_unreachable(
    live_stack: Stack, auditor: ApiClient
) -> None:
    day = _today() - timedelta(days=61)
    (charge,) = _unique_charges(1)
    _seed(live_stack, "acme", [(charge, 4200, _at(day, 8))])
    data = _file(day, [(charge, 4200)])

    run = _reconcile(live_stack, day, data, evidence_url=_closed_port_url())
    assert run.evidence_id is None  # the run stands; its record is owed
    assert run.matched == 1
    owed = REGISTRY.get_sample_value("moneypath_reconciliation_evidence_owed")
    assert owed is not None
    assert owed >= 1

    async def worker(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, runs.Run]:
        client = _evidence_client(live_stack, live_stack.evidence_url)
        try:
            written = await reconciliation_api.submit_owed_evidence(sessions, client)
            # A second pass finds nothing owed for this run: no second record.
            await reconciliation_api.submit_owed_evidence(sessions, client)
        finally:
            await client.aclose()
        async with sessions() as session:
            return written, await runs.get(session, run.id)

    written, after = _run(live_stack, worker)
    assert written >= 1
    assert after.evidence_id is not None
    record = auditor.get(f"/v1/evidence/{after.evidence_id}").json()["record"]
    assert record["details"]["run_id"] == run.id
    assert record["result"] == "pass"
    assert record["started_at"] <= record["finished_at"]
    same_run = [
        item
        for item in auditor.get("/v1/evidence", params={"type": "recon.run", "limit": 200}).json()[
            "data"
        ]
        if item["details"]["run_id"] == run.id
    ]
    assert len(same_run) == 1


def test_lag_is_the_oldest_unreconciled_transaction_and_pending_ones_count_when_runs_cover_days(
    stack: Stack,
) -> None:
    # No other test books this far back. Day A has two captures, day B one.
    day_a = _today() - timedelta(days=26)
    day_b = day_a + timedelta(days=1)
    first, second, third = _unique_charges(3)
    _seed(
        stack,
        "acme",
        [
            (first, 1000, _at(day_a, 10)),
            (second, 2000, _at(day_a, 11)),
            (third, 3000, _at(day_b, 9)),
        ],
    )
    tolerances = domain.Tolerances(amount_minor=0, days=1)

    async def story(sessions: async_sessionmaker[AsyncSession]) -> list[object]:
        now = datetime.now(UTC)
        seen: list[object] = []
        async with sessions() as session:
            seen.append(await lag.oldest_unreconciled(session, "acme", now=now))
        # Day A's file lists only the first capture: the second is pending (1-day tolerance).
        async with sessions() as session, session.begin():
            run_a, _ = await runs.reconcile(
                session, "acme", day_a, _file(day_a, [(first, 1000)]),
                source="uploaded", started_by="test", tolerances=tolerances,
            )  # fmt: skip
        seen.append(run_a)
        async with sessions() as session:
            seen.append(await lag.oldest_unreconciled(session, "acme", now=now))
        # Day B's file lists the late second capture and the third.
        async with sessions() as session, session.begin():
            run_b, _ = await runs.reconcile(
                session, "acme", day_b, _file(day_b, [(second, 2000), (third, 3000)]),
                source="uploaded", started_by="test", tolerances=tolerances,
            )  # fmt: skip
        seen.append(run_b)
        async with sessions() as session:
            seen.append(await lag.oldest_unreconciled(session, "acme", now=now))
        await reconciliation_api.refresh_metrics(sessions, "acme")
        return seen

    before, run_a, pending, run_b, after = _run(stack, story)
    assert before is not None
    assert before <= _at(day_a, 10)  # day A has no run yet: its first capture waits
    assert isinstance(run_a, runs.Run)
    assert (run_a.matched, run_a.pending, run_a.unmatched_provider) == (1, 1, 0)
    assert pending == _at(day_a, 11)  # the capture no file has named yet
    assert isinstance(run_b, runs.Run)
    # Day A's first capture, settled by day A's run, is not offered again: no false
    # "missing at the provider" because day B's file rightly leaves it out.
    assert (run_b.matched, run_b.pending, run_b.unmatched_provider) == (2, 0, 0)
    assert after is None or after > _at(day_b, 23)
    gauge = REGISTRY.get_sample_value("moneypath_reconciliation_lag_seconds", {"provider": "acme"})
    assert gauge is not None
    assert gauge < (datetime.now(UTC) - _at(day_b, 9)).total_seconds()


def test_odd_references_reach_the_exceptions_unchanged_when_the_file_is_staged_through_copy(
    stack: Stack,
) -> None:
    # Quotes, commas, braces, backslashes and a tab: COPY's and text[]'s special characters.
    odd = 'ch_"q",{b}\\s\tt'
    day = _today() - timedelta(days=70)
    (known,) = _unique_charges(1)
    _seed(stack, "acme", [(known, 900, _at(day, 7))])
    row = f'{day.isoformat()},2,CAPTURE,"{odd.replace(chr(34), chr(34) * 2)}",op_x,500,0,500,USD\n'
    data = _file(day, [(known, 900)]) + row.encode()

    async def scenario(
        sessions: async_sessionmaker[AsyncSession],
    ) -> tuple[runs.Run, list[runs.ReconException]]:
        async with sessions() as session, session.begin():
            run, _ = await runs.reconcile(
                session, "acme", day, data, source="uploaded", started_by="test",
                tolerances=domain.Tolerances(amount_minor=0, days=0),
            )  # fmt: skip
            return run, await runs.exceptions_of(session, run.id)

    run, found = _run(stack, scenario)
    assert (run.lines, run.matched, run.unmatched_internal) == (2, 1, 1)
    assert [item.provider_references for item in found] == [(odd,)]
    assert [item.line_numbers for item in found] == [(3,)]

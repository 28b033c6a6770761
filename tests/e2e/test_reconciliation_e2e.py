"""Reconciliation on the real stack: payments made through the API at the simulated
providers, the simulator's settlement files (with planted discrepancies), PostgreSQL.

The stack's database is shared with the other e2e modules, so a provider's file for today
also lists their payments; the classification assertions look at the references this
module made (any false positive among them fails the test). The per-scenario runs call
`runs.reconcile` in a transaction that is rolled back, because a committed run is final
for its (provider, day); the HTTP tests commit one run per provider.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.entrypoints.devstack import DEV_ROOT_TOKEN, Stack
from app.platform.db import create_engine, session_factory
from app.platform.errors import ValidationError
from app.platform.settings import VaultLogin
from app.platform.vault import Vault
from app.providers.api import ProviderClients, ProviderSettings, read_provider_secrets
from app.reconciliation import api as reconciliation_api
from app.reconciliation import domain, runs
from tests.support.api_client import ApiClient, ClientFactory
from tests.support.payments import Merchant, key, run_cli

T = TypeVar("T")
EXACT = domain.Tolerances(amount_minor=0, days=0)


@dataclass
class Made:
    """What this module paid today at one provider: charge id per role."""

    provider: str
    charges: dict[str, str]


def _today() -> date:
    return datetime.now(UTC).date()


def _charge(merchant: Merchant, amount_minor: int, provider: str) -> tuple[str, str]:
    response = merchant.pay(amount_minor, provider=provider)
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "captured", payment
    return payment["id"], payment["provider_reference"]


def _make(merchant: Merchant, provider: str) -> Made:
    charges: dict[str, str] = {}
    for index, role in enumerate(
        ("clean", "missing", "amount", "currency", "duplicate", "net_a", "net_b", "refunded")
    ):
        payment_id, charge = _charge(merchant, 1000 + 111 * index, provider)
        charges[role] = charge
        if role == "refunded":
            # Two refunds of one charge: two provider lines against one charge (one-to-many).
            path = f"/v1/payments/{payment_id}/refunds"
            for amount in (100, 250):
                refund = merchant.client.post(
                    path, json={"amount_minor": amount}, idempotency_key=key()
                )
                assert refund.status_code == 201, refund.text
    return Made(provider, charges)


@pytest.fixture(scope="module")
def made(merchant: Merchant) -> dict[str, Made]:
    return {provider: _make(merchant, provider) for provider in ("acme", "globex")}


def _providers(stack: Stack) -> ProviderClients:
    vault = Vault.login(stack.vault_addr, VaultLogin(token=DEV_ROOT_TOKEN))
    return ProviderClients(ProviderSettings.from_env(stack.app_env()), read_provider_secrets(vault))


def _run(
    stack: Stack, make: Callable[[async_sessionmaker[AsyncSession], ProviderClients], Awaitable[T]]
) -> T:
    async def main() -> T:
        assert stack.database_url is not None
        engine = create_engine(stack.database_url, pool_size=2)
        providers = _providers(stack)
        try:
            return await make(session_factory(engine), providers)
        finally:
            await providers.aclose()
            await engine.dispose()

    return asyncio.run(main())


def _plan(stack: Stack, provider: str, plan: list[dict[str, Any]]) -> None:
    response = httpx.put(
        f"{stack.sim_url}/_sim/settlements/{provider}/{_today().isoformat()}",
        json={"discrepancies": plan},
        timeout=10,
    )
    response.raise_for_status()


def _dry_run(
    stack: Stack, provider: str, plan: list[dict[str, Any]]
) -> tuple[runs.Run, list[runs.ReconException]]:
    """Reconcile today's file with `plan` planted, then roll everything back."""
    _plan(stack, provider, plan)

    async def scenario(
        sessions: async_sessionmaker[AsyncSession], providers: ProviderClients
    ) -> tuple[runs.Run, list[runs.ReconException]]:
        data = await providers.fetch_settlement_file(provider, _today())
        async with sessions() as session:
            transaction = await session.begin()
            try:
                run, created = await runs.reconcile(
                    session, provider, _today(), data,
                    source="fetched", started_by="test", tolerances=EXACT,
                )  # fmt: skip
                assert created
                return run, await runs.exceptions_of(session, run.id)
            finally:
                await transaction.rollback()

    try:
        return _run(stack, scenario)
    finally:
        _plan(stack, provider, [])


def _ours(found: list[runs.ReconException], made: Made) -> dict[str, set[str]]:
    """Class -> the roles of this module's charges an exception names."""
    by_charge = {charge: role for role, charge in made.charges.items()}
    classes: dict[str, set[str]] = {}
    for item in found:
        for reference in item.provider_references:
            if reference in by_charge:
                classes.setdefault(item.line_class, set()).add(by_charge[reference])
    return classes


@pytest.mark.parametrize("provider", ["acme", "globex"])
def test_clean_file_gives_no_exception_for_our_payments_when_nothing_is_planted(
    stack: Stack, made: dict[str, Made], provider: str
) -> None:
    run, found = _dry_run(stack, provider, [])
    assert _ours(found, made[provider]) == {}
    assert run.matched >= len(made[provider].charges) + 1  # the two refunds are one group


@pytest.mark.parametrize("provider", ["acme", "globex"])
def test_each_planted_discrepancy_is_flagged_with_its_class_when_the_file_has_them(
    stack: Stack, made: dict[str, Made], provider: str
) -> None:
    charges = made[provider].charges
    plan: list[dict[str, Any]] = [
        {"kind": "missing", "reference": charges["missing"]},
        {"kind": "amount_mismatch", "reference": charges["amount"], "delta_minor": 7},
        {"kind": "currency_mismatch", "reference": charges["currency"], "currency": "JPY"},
        {"kind": "duplicate", "reference": charges["duplicate"]},
        {
            "kind": "fees_netted",
            "references": [charges["net_a"], charges["net_b"]],
            "fee_minor": 30,
        },
        {"kind": "extra", "amount_minor": 4242, "currency": "USD"},
    ]
    run, found = _dry_run(stack, provider, plan)
    assert _ours(found, made[provider]) == {
        "missing_at_provider": {"missing"},
        "amount_mismatch": {"amount"},
        "currency_mismatch": {"currency"},
        "duplicate": {"duplicate"},
    }
    extra = [item for item in found if item.provider_gross_minor == 4242]
    assert [item.line_class for item in extra] == ["missing_internally"]
    amount = next(item for item in found if item.line_class == "amount_mismatch"
                  and charges["amount"] in item.provider_references)  # fmt: skip
    assert amount.provider_gross_minor is not None
    assert amount.internal_minor is not None
    assert amount.provider_gross_minor - amount.internal_minor == 7
    # Fees netted against one batch line match its two charges (many-to-one), not an error.
    assert run.unmatched_provider >= 1
    assert run.unmatched_internal >= 1
    assert run.duplicates >= 1
    assert run.currency_mismatches >= 1
    assert run.amount_mismatches >= 1


def _recon_client(client_factory: ClientFactory, http: httpx.Client) -> ApiClient:
    return client_factory(scopes=("recon:read", "recon:write"), http=http)


def _runs_of(stack: Stack, provider: str, day: date) -> list[tuple[Any, ...]]:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        return connection.execute(
            "SELECT id FROM reconciliation.runs WHERE provider = %s AND settlement_date = %s",
            (provider, day),
        ).fetchall()


@pytest.fixture(scope="module")
def recon(client_factory: ClientFactory, payments_http: httpx.Client) -> ApiClient:
    return _recon_client(client_factory, payments_http)


def test_run_over_http_stores_counts_and_exceptions_and_reruns_return_it_when_the_day_repeats(
    stack: Stack, made: dict[str, Made], recon: ApiClient
) -> None:
    charges = made["acme"].charges
    _plan(
        stack,
        "acme",
        [{"kind": "amount_mismatch", "reference": charges["amount"], "delta_minor": -5}],
    )
    try:
        body = {"provider": "acme", "settlement_date": _today().isoformat()}
        first = recon.post("/v1/reconciliation/runs", json=body, idempotency_key=key())
        assert first.status_code == 201, first.text
        run = first.json()
        for field in ("matched", "unmatched_internal", "unmatched_provider", "amount_mismatches"):
            assert isinstance(run[field], int)
        assert run["amount_mismatches"] >= 1
        assert len(run["file_sha256"]) == 64
        # Its recon.run evidence record: written, or owed until the worker writes it.
        assert run["evidence_id"] is None or run["evidence_id"].startswith("evd_")
        ours = [e for e in run["exceptions"] if charges["amount"] in e["provider_references"]]
        assert [e["class"] for e in ours] == ["amount_mismatch"]
        # Another request (new key) for the same provider and day returns the same run.
        again = recon.post("/v1/reconciliation/runs", json=body, idempotency_key=key())
        assert again.status_code == 201, again.text
        assert again.json()["id"] == run["id"]
        assert len(_runs_of(stack, "acme", _today())) == 1
        read = recon.get(f"/v1/reconciliation/runs/{run['id']}")
        assert read.status_code == 200
        assert read.json()["exceptions"] == run["exceptions"]
        assert stack.database_url is not None
        with psycopg.connect(stack.database_url, autocommit=True) as connection:
            (details,) = connection.execute(
                "SELECT details FROM platform.audit_log WHERE event_type = 'recon.run'"
                " AND resource_id = %s",
                (run["id"],),
            ).fetchone() or (None,)
        assert details is not None
        assert details["file_sha256"] == run["file_sha256"]
        assert details["control_refs"]
        assert details["matched"] == run["matched"]
    finally:
        _plan(stack, "acme", [])


def test_resolving_an_exception_closes_it_and_is_audited_when_a_reason_is_given(
    stack: Stack, made: dict[str, Made], recon: ApiClient
) -> None:
    charges = made["acme"].charges
    # Planted in case this test runs first; otherwise the day's run already exists.
    _plan(stack, "acme", [{"kind": "missing", "reference": charges["missing"]}])
    try:
        body = {"provider": "acme", "settlement_date": _today().isoformat()}
        run = recon.post("/v1/reconciliation/runs", json=body, idempotency_key=key()).json()
    finally:
        _plan(stack, "acme", [])
    open_items = recon.get("/v1/reconciliation/exceptions", params={"status": "open", "limit": 200})
    assert open_items.status_code == 200, open_items.text
    target = next(e for e in run["exceptions"] if e["status"] == "open")
    path = f"/v1/reconciliation/exceptions/{target['id']}/resolve"
    missing_reason = recon.post(path, json={"reason": ""}, idempotency_key=key())
    assert missing_reason.status_code == 422
    assert missing_reason.headers["content-type"].startswith("application/problem+json")
    resolved = recon.post(
        path, json={"reason": "provider short-paid; claim filed"}, idempotency_key=key()
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["resolved_by"]
    assert resolved.json()["resolution_reason"]
    twice = recon.post(path, json={"reason": "again"}, idempotency_key=key())
    assert twice.status_code == 409
    assert twice.json()["code"] == "invalid_state"
    still_open = recon.get("/v1/reconciliation/exceptions", params={"status": "open", "limit": 200})
    assert target["id"] not in {e["id"] for e in still_open.json()["data"]}
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT actor, details FROM platform.audit_log"
            " WHERE event_type = 'recon.exception.resolved' AND resource_id = %s",
            (target["id"],),
        ).fetchall()
    assert len(rows) == 1
    assert rows[0][1]["reason"] == "provider short-paid; claim filed"


@pytest.mark.parametrize(
    "body",
    [
        {"provider": "nope", "settlement_date": "2026-01-01"},
        {"provider": "globex", "settlement_date": "yesterday"},
        {"provider": "globex", "settlement_date": "2999-01-01"},
        {"provider": "globex"},
        {"provider": "globex", "settlement_date": "2026-01-01", "extra": 1},
    ],
)
def test_bad_run_request_gets_422_problem_and_writes_nothing_when_input_is_invalid(
    stack: Stack, recon: ApiClient, body: dict[str, Any]
) -> None:
    before = _count(stack)
    response = recon.post("/v1/reconciliation/runs", json=body, idempotency_key=key())
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "validation_error"
    assert _count(stack) == before


def _count(stack: Stack) -> int:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        row = connection.execute("SELECT count(*) FROM reconciliation.runs").fetchone()
    assert row is not None
    return int(row[0])


def test_unreadable_uploaded_file_gets_invalid_settlement_file_and_writes_nothing_when_uploaded(
    stack: Stack,
) -> None:
    before = _count(stack)
    day = _today() - timedelta(days=3)

    async def upload(sessions: async_sessionmaker[AsyncSession], providers: ProviderClients) -> str:
        try:
            await reconciliation_api.reconcile_day(
                sessions, providers, "acme", day, started_by="test",
                data=b"settlement_date,line\n2026-01-01,not-a-number\n",
            )  # fmt: skip
        except ValidationError as error:
            return error.code
        return "accepted"

    assert _run(stack, upload) == "invalid_settlement_file"
    assert _count(stack) == before


def test_worker_step_reconciles_yesterday_for_every_provider_when_it_runs(
    stack: Stack, made: dict[str, Made]
) -> None:
    # "Yesterday" from tomorrow's point of view is today, the day this module paid on.
    async def cycle(
        sessions: async_sessionmaker[AsyncSession], providers: ProviderClients
    ) -> reconciliation_api.ScheduledReport:
        return await reconciliation_api.run_scheduled(
            sessions, providers, today=_today() + timedelta(days=1)
        )

    report = _run(stack, cycle)
    assert report.runs_failed == 0
    assert report.runs_made + report.runs_existing == 2
    for provider in ("acme", "globex"):
        assert len(_runs_of(stack, provider, _today())) == 1
    again = _run(stack, cycle)
    assert (again.runs_made, again.runs_existing) == (0, 2)
    # The gauges this process exports follow the database after each run.
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM reconciliation.exceptions"
            " WHERE provider = 'acme' AND status = 'open'"
        ).fetchone()
    assert row is not None
    open_gauge = REGISTRY.get_sample_value(
        "moneypath_reconciliation_open_discrepancies", {"provider": "acme"}
    )
    assert open_gauge == row[0]
    lag = REGISTRY.get_sample_value("moneypath_reconciliation_lag_seconds", {"provider": "acme"})
    assert lag is not None
    assert 0 <= lag < 86_400


def test_cli_upload_reconciles_a_file_from_disk_and_refuses_a_bad_one_when_uploaded(
    stack: Stack, made: dict[str, Made], tmp_path: Path
) -> None:
    # Today's globex file, uploaded as if it were the file of a day we booked nothing on:
    # every line of ours is then unknown internally.
    day = _today() - timedelta(days=5)
    good = tmp_path / "globex.csv"
    good.write_bytes(
        _run(stack, lambda _, providers: providers.fetch_settlement_file("globex", _today()))
    )
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"ReportDate;RecordType\nnot;a;settlement;file\n")
    before = _count(stack)
    refused = run_cli(
        stack, "recon", "upload", "--provider", "globex", "--date", day.isoformat(), str(bad)
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "invalid_settlement_file" in refused.stderr
    assert _count(stack) == before
    accepted = run_cli(
        stack, "recon", "upload", "--provider", "globex", "--date", day.isoformat(), str(good)
    )
    assert accepted.returncode == 0, accepted.stderr[-2000:]
    run = json.loads(accepted.stdout.strip().splitlines()[-1])
    assert run["created"] is True
    assert run["source"] == "uploaded"
    assert run["file_sha256"] == hashlib.sha256(good.read_bytes()).hexdigest()
    assert run["unmatched_internal"] >= len(made["globex"].charges)
    assert run["matched"] == 0
    again = run_cli(
        stack, "recon", "upload", "--provider", "globex", "--date", day.isoformat(), str(good)
    )
    assert json.loads(again.stdout.strip().splitlines()[-1])["id"] == run["id"]

"""Settlement files from the real simulator, both formats, every planted discrepancy kind,
loaded by the adapters (COPY on the real PostgreSQL) into integer minor units."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.entrypoints.devstack import Stack
from app.providers.api import ProviderClients, SettlementLine
from tests.integration.providers.helpers import key, run, sim
from tests.support.staged import Database

pytestmark = pytest.mark.integration
BOTH = pytest.mark.parametrize("provider", ["acme", "globex"])


@pytest.fixture(scope="module")
def database(staged_database: Database) -> Database:
    return staged_database


async def _captured(providers: ProviderClients, provider: str, amounts: list[int]) -> list[str]:
    references = []
    for amount in amounts:
        result = await providers.authorize(
            provider,
            card_token="tok_visa",
            amount_minor=amount,
            currency="EUR",
            idempotency_key=key(),
            capture=True,
        )
        assert result.provider_reference is not None
        references.append(result.provider_reference)
    return references


def _ours(lines: list[SettlementLine], references: set[str]) -> list[SettlementLine]:
    return [line for line in lines if references & set(line.provider_references)]


@BOTH
def test_clean_file_lists_each_movement_once_when_nothing_is_planted(
    stack: Stack, database: Database, provider: str
) -> None:
    today = datetime.now(UTC).date()

    async def scenario(providers: ProviderClients) -> tuple[list[str], str, bytes]:
        refs = await _captured(providers, provider, [1050, 2000])
        refund = await providers.refund(
            provider,
            provider_reference=refs[1],
            amount_minor=499,
            currency="EUR",
            idempotency_key=key(),
        )
        assert refund.operation_reference is not None
        return (
            refs,
            refund.operation_reference,
            await providers.fetch_settlement_file(provider, today),
        )

    refs, refund_id, data = run(scenario, stack)
    lines = _ours(database.parse(provider, data), set(refs))
    by_kind = sorted((line.record_type, line.gross_minor) for line in lines)
    assert by_kind == [("capture", 1050), ("capture", 2000), ("refund", 499)]
    assert all(line.fee_minor == 0 and line.net_minor == line.gross_minor for line in lines)
    assert all(line.currency == "EUR" and line.settlement_date == today for line in lines)
    assert any(line.operation_reference == refund_id for line in lines)
    assert all(isinstance(line.gross_minor, int) for line in lines)


@BOTH
def test_every_planted_discrepancy_appears_when_plan_asks_for_it(
    stack: Stack, database: Database, provider: str
) -> None:
    today = datetime.now(UTC).date()
    extra_ref = key("extra")

    async def scenario(providers: ProviderClients) -> tuple[list[str], bytes]:
        refs = await _captured(providers, provider, [100, 200, 300, 400, 500, 600, 700])
        missing, wrong_amount, wrong_currency, doubled, net_a, net_b, _clean = refs
        plan = [
            {"kind": "missing", "reference": missing},
            {"kind": "extra", "amount_minor": 999, "currency": "EUR", "reference": extra_ref},
            {"kind": "amount_mismatch", "reference": wrong_amount, "delta_minor": -50},
            {"kind": "currency_mismatch", "reference": wrong_currency, "currency": "USD"},
            {"kind": "duplicate", "reference": doubled},
            {"kind": "fees_netted", "references": [net_a, net_b], "fee_minor": 33},
        ]
        sim(
            stack,
            "PUT",
            f"/_sim/settlements/{provider}/{today.isoformat()}",
            {"discrepancies": plan},
        )
        try:
            return refs, await providers.fetch_settlement_file(provider, today)
        finally:
            sim(
                stack,
                "PUT",
                f"/_sim/settlements/{provider}/{today.isoformat()}",
                {"discrepancies": []},
            )

    refs, data = run(scenario, stack)
    missing, wrong_amount, wrong_currency, doubled, net_a, net_b, clean = refs
    lines = _ours(database.parse(provider, data), {*refs, extra_ref})

    def of(reference: str) -> list[SettlementLine]:
        return [line for line in lines if reference in line.provider_references]

    assert of(missing) == []
    assert [(line.gross_minor, line.currency) for line in of(extra_ref)] == [(999, "EUR")]
    assert [line.gross_minor for line in of(wrong_amount)] == [150]
    assert [line.currency for line in of(wrong_currency)] == ["USD"]
    assert len(of(doubled)) == 2
    assert of(doubled)[0].line_number != of(doubled)[1].line_number
    (batch,) = of(net_a)
    assert set(batch.provider_references) == {net_a, net_b}
    assert (batch.gross_minor, batch.fee_minor, batch.net_minor) == (1100, 33, 1067)
    assert [line.gross_minor for line in of(clean)] == [700]


@BOTH
def test_file_bytes_are_stable_when_fetched_twice(stack: Stack, provider: str) -> None:
    today = datetime.now(UTC).date()

    async def twice(providers: ProviderClients) -> tuple[bytes, bytes]:
        first = await providers.fetch_settlement_file(provider, today)
        return first, await providers.fetch_settlement_file(provider, today)

    first, second = run(twice, stack)
    assert first == second

"""The money-path metrics move when the API does the thing they count."""

from __future__ import annotations

from typing import Any

import psycopg
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from app.entrypoints.devstack import Stack
from tests.integration.ledger.helpers import key, leg, open_account


def _value(api: TestClient, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(api.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_ledger_writes_replays_and_costs_are_counted_when_transfers_run(
    api: TestClient, client_factory: Any
) -> None:
    client = client_factory(scopes=["ledger:write", "ledger:read"])
    source = open_account(client, overdraft_limit_minor=None)["id"]
    target = open_account(client)["id"]
    ok = {"status": "posted", "postings": [leg(source, "debit", 5), leg(target, "credit", 5)]}
    overdraft = {
        "status": "posted",
        "postings": [leg(target, "debit", 99), leg(source, "credit", 99)],
    }
    name = "moneypath_ledger_writes_total"
    before = {
        "success": _value(api, name, operation="create_transaction", outcome="success"),
        "refused": _value(api, name, operation="create_transaction", outcome="insufficient_funds"),
        "replays": _value(
            api, "moneypath_idempotent_replays_total", route="/v1/ledger/transactions"
        ),
        "cost": _value(api, "moneypath_cost_micros_total", component="ledger_write"),
        "opa": _value(api, "moneypath_opa_decision_duration_seconds_count", outcome="allow"),
        "policy": _value(api, "moneypath_authorization_duration_seconds_count", stage="policy"),
    }
    repeated = key()

    assert (
        client.post("/v1/ledger/transactions", json=ok, idempotency_key=repeated).status_code == 201
    )
    replay = client.post("/v1/ledger/transactions", json=ok, idempotency_key=repeated)
    refused = client.post("/v1/ledger/transactions", json=overdraft, idempotency_key=key())

    assert replay.headers["idempotent-replayed"] == "true"
    assert refused.json()["code"] == "insufficient_funds"
    assert (
        _value(api, name, operation="create_transaction", outcome="success")
        == before["success"] + 2
    )
    assert (
        _value(api, name, operation="create_transaction", outcome="insufficient_funds")
        == before["refused"] + 1
    )
    assert (
        _value(api, "moneypath_idempotent_replays_total", route="/v1/ledger/transactions")
        == before["replays"] + 1
    )
    assert _value(api, "moneypath_cost_micros_total", component="ledger_write") > before["cost"]
    assert _value(api, "moneypath_opa_decision_duration_seconds_count", outcome="allow") >= (
        before["opa"] + 3
    )
    assert _value(api, "moneypath_authorization_duration_seconds_count", stage="policy") >= (
        before["policy"] + 3
    )
    assert _value(api, "moneypath_fixed_cost_micros_per_second") > 0


def test_signature_rejections_are_counted_by_code_when_a_signature_is_bad(
    api: TestClient, client_factory: Any
) -> None:
    client = client_factory(scopes=["ledger:write"])
    body = {"code": f"m-{key()}", "currency": "USD", "normal_balance": "credit"}
    before = _value(api, "moneypath_signature_rejections_total", code="signature_required")
    unsigned = client.post("/v1/ledger/accounts", json=body, idempotency_key=key(), sign=False)
    assert unsigned.json()["code"] == "signature_required"
    after = _value(api, "moneypath_signature_rejections_total", code="signature_required")
    assert after == before + 1


def _unpublished(stack: Stack) -> int:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM platform.outbox WHERE published_at IS NULL"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_outbox_depth_is_sampled_when_metrics_are_scraped(
    api: TestClient, client_factory: Any, stack: Stack
) -> None:
    client = client_factory(scopes=["ledger:write"])
    open_account(client)
    # A relay may publish in between: the sample lies between the counts around it.
    first = _unpublished(stack)
    sampled = _value(api, "moneypath_outbox_depth")
    second = _unpublished(stack)
    assert min(first, second) <= sampled <= max(first, second)
    assert "moneypath_outbox_oldest_age_seconds" in api.get("/metrics").text

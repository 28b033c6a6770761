"""The review queue over HTTP: scopes, the decision action (200, audited, idempotent,
published to the outbox), and refusals that write nothing."""

from __future__ import annotations

from typing import Any

import pytest

from app.entrypoints.devstack import Stack
from tests.integration.risk.helpers import assess, customer, key, payment_input, sql
from tests.support.api_client import ApiClient, ClientFactory

MAX_PAGES = 100


@pytest.fixture(scope="module")
def kyc(client_factory: ClientFactory) -> ApiClient:
    return client_factory(scopes=["kyc:write"], name="risk-api-kyc")


@pytest.fixture(scope="module")
def reviewer(client_factory: ClientFactory) -> ApiClient:
    return client_factory(scopes=["risk:read", "risk:write"], name="risk-reviewer")


@pytest.fixture(scope="module")
def reader(client_factory: ClientFactory) -> ApiClient:
    return client_factory(scopes=["risk:read"], name="risk-reader")


def _held(kyc: ApiClient, stack: Stack) -> tuple[str, str]:
    """A payment the policy holds for review (a new customer above the new-customer limit):
    returns (review id, payment id)."""
    risk_input = payment_input(customer(kyc, stack, age_days=1), amount_minor=30_000)
    decision = assess(stack, risk_input)
    assert decision.outcome == "review"
    assert decision.review_id is not None
    return decision.review_id, risk_input.payment_id


def _all(client: ApiClient, status: str | None = "open", limit: int = 200) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"limit": limit}
    if status is not None:
        params["status"] = status
    found: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        response = client.get("/v1/risk/reviews", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        found.extend(body["data"])
        if body["next_cursor"] is None:
            return found
        params["cursor"] = body["next_cursor"]
    raise AssertionError("the review list did not end")


def _events(stack: Stack, review_id: str) -> list[Any]:
    return [
        row[0]
        for row in sql(
            stack,
            "SELECT payload FROM platform.outbox"
            " WHERE event_type = 'risk.review.decided' AND payload->>'review_id' = %s",
            review_id,
        )
    ]


def test_open_reviews_are_listed_oldest_first_when_asked_with_risk_read(
    kyc: ApiClient, stack: Stack, reader: ApiClient
) -> None:
    first, payment_id = _held(kyc, stack)
    second, _ = _held(kyc, stack)
    listed = _all(reader)
    ids = [review["id"] for review in listed]
    assert ids.index(first) < ids.index(second)
    mine = next(review for review in listed if review["id"] == first)
    assert mine["payment_id"] == payment_id
    assert mine["status"] == "open"
    assert mine["reasons"] == ["new_customer_amount"]
    assert mine["decision_id"]
    # Small pages walk the same queue through cursors.
    assert [review["id"] for review in _all(reader, limit=1)] == ids
    one = reader.get(f"/v1/risk/reviews/{first}")
    assert one.status_code == 200
    assert one.json() == mine


def test_decision_answers_200_audits_and_publishes_when_a_reviewer_approves(
    kyc: ApiClient, stack: Stack, reviewer: ApiClient
) -> None:
    review_id, payment_id = _held(kyc, stack)
    idempotency_key = key()
    body = {"decision": "approve", "reason": "known customer, confirmed by phone"}
    response = reviewer.post(
        f"/v1/risk/reviews/{review_id}/decision", json=body, idempotency_key=idempotency_key
    )
    assert response.status_code == 200, response.text
    decided = response.json()
    assert decided["status"] == "approved"
    assert decided["decision_reason"] == body["reason"]
    assert decided["decided_by"] == reviewer.client_id
    assert decided["decided_at"] is not None
    (event,) = _events(stack, review_id)
    assert event["payment_id"] == payment_id
    assert event["decision"] == "approve"
    assert event["reason"] == body["reason"]
    audits = sql(
        stack,
        "SELECT event_type, actor, decision_id, details FROM platform.audit_log"
        " WHERE resource_id = %s ORDER BY event_type",
        review_id,
    )
    assert [row[0] for row in audits] == ["risk.review.decided", "risk.reviews.decide"]
    assert all(row[1] == reviewer.client_id and row[2] for row in audits)
    assert audits[0][3]["reason"] == body["reason"]
    assert review_id not in {review["id"] for review in _all(reviewer)}
    # A retry with the same key replays the answer and publishes nothing twice.
    replay = reviewer.post(
        f"/v1/risk/reviews/{review_id}/decision", json=body, idempotency_key=idempotency_key
    )
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == decided
    assert len(_events(stack, review_id)) == 1


def test_rejection_publishes_reject_when_a_reviewer_rejects(
    kyc: ApiClient, stack: Stack, reviewer: ApiClient
) -> None:
    review_id, _ = _held(kyc, stack)
    response = reviewer.post(
        f"/v1/risk/reviews/{review_id}/decision",
        json={"decision": "reject", "reason": "card testing pattern"},
        idempotency_key=key(),
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "rejected"
    assert [event["decision"] for event in _events(stack, review_id)] == ["reject"]
    assert review_id in {review["id"] for review in _all(reviewer, status="rejected")}


def test_second_decision_is_refused_409_when_the_review_was_decided(
    kyc: ApiClient, stack: Stack, reviewer: ApiClient
) -> None:
    review_id, _ = _held(kyc, stack)
    path = f"/v1/risk/reviews/{review_id}/decision"
    first = reviewer.post(path, json={"decision": "reject", "reason": "x"}, idempotency_key=key())
    assert first.status_code == 200
    again = reviewer.post(path, json={"decision": "approve", "reason": "y"}, idempotency_key=key())
    assert again.status_code == 409
    assert again.json()["code"] == "invalid_state"
    assert [event["decision"] for event in _events(stack, review_id)] == ["reject"]


@pytest.mark.parametrize(
    "body",
    [
        {"decision": "maybe", "reason": "x"},
        {"decision": "approve"},
        {"decision": "approve", "reason": ""},
        {"decision": "approve", "reason": "x" * 501},
        {"decision": "approve", "reason": "x", "extra": True},
    ],
)
def test_bad_decision_body_gets_422_and_writes_nothing_when_sent(
    body: dict[str, Any], kyc: ApiClient, stack: Stack, reviewer: ApiClient
) -> None:
    review_id, _ = _held(kyc, stack)
    response = reviewer.post(
        f"/v1/risk/reviews/{review_id}/decision", json=body, idempotency_key=key()
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "validation_error"
    assert reviewer.get(f"/v1/risk/reviews/{review_id}").json()["status"] == "open"
    assert _events(stack, review_id) == []


def test_scopes_are_enforced_when_a_client_lacks_them(
    kyc: ApiClient, stack: Stack, reader: ApiClient, client_factory: ClientFactory
) -> None:
    review_id, _ = _held(kyc, stack)
    shop = client_factory(scopes=["payments:read", "payments:write"], name="risk-shop")
    assert shop.get("/v1/risk/reviews", params={"status": "open"}).status_code == 403
    refused = reader.post(
        f"/v1/risk/reviews/{review_id}/decision",
        json={"decision": "approve", "reason": "x"},
        idempotency_key=key(),
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert reader.get(f"/v1/risk/reviews/{review_id}").json()["status"] == "open"


def test_unknown_review_and_bad_status_filter_are_refused_when_asked(
    reviewer: ApiClient,
) -> None:
    missing = reviewer.post(
        "/v1/risk/reviews/rvw_nope/decision",
        json={"decision": "approve", "reason": "x"},
        idempotency_key=key(),
    )
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    assert reviewer.get("/v1/risk/reviews/rvw_nope").status_code == 404
    bad = reviewer.get("/v1/risk/reviews", params={"status": "pending"})
    assert bad.status_code == 422
    assert bad.json()["code"] == "validation_error"
    forged = reviewer.get("/v1/risk/reviews", params={"cursor": "e30"})
    assert forged.status_code == 422

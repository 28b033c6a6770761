"""Payment risk assessment against the real OPA (risk.rego) and PostgreSQL counters, and
the fail-safe: OPA stopped, slow or answering nonsense sends the payment to review."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.entrypoints.devstack import Ports, Stack
from app.entrypoints.launchers.processes import REPO_ROOT
from app.platform.db import create_engine, session_factory
from app.platform.opa import Opa
from app.risk import api as risk_api
from tests.integration.risk.helpers import assess, customer, in_transaction, payment_input, sql
from tests.support.api_client import ApiClient, ClientFactory


@pytest.fixture(scope="module")
def kyc(client_factory: ClientFactory) -> ApiClient:
    return client_factory(scopes=["kyc:write"], name="risk-kyc")


@contextlib.contextmanager
def _own_opa(root: Path, policies: Path) -> Iterator[Stack]:
    """A second, real OPA on its own port with its own policy directory."""
    own = Stack(root=root, ports=Ports.free(), policies_dir=policies, watch_policies=False)
    try:
        own.start_opa()
        yield own
    finally:
        own.stop_all()


def _policies_with_risk(tmp_path: Path, risk_rego: str) -> Path:
    policies = tmp_path / "policies"
    policies.mkdir()
    shutil.copy(REPO_ROOT / "policies" / "authz.rego", policies / "authz.rego")
    (policies / "risk.rego").write_text(risk_rego)
    return policies


def _audit_rows(stack: Stack, payment_id: str) -> list[tuple[Any, ...]]:
    return sql(
        stack,
        "SELECT decision_id, details FROM platform.audit_log"
        " WHERE event_type = 'risk.assessed' AND resource_id = %s",
        payment_id,
    )


def test_clean_payment_is_approved_and_audited_with_opa_decision_id_when_no_rule_fires(
    kyc: ApiClient, stack: Stack
) -> None:
    risk_input = payment_input(customer(kyc, stack))
    decision = assess(stack, risk_input)
    assert decision.outcome == "approve"
    assert decision.reasons == ()
    assert decision.review_id is None
    assert decision.decision_id
    ((decision_id, details),) = _audit_rows(stack, risk_input.payment_id)
    assert decision_id == decision.decision_id
    assert details["risk_outcome"] == "approve"
    assert details["velocity"]["1h"] == {"count": 0, "amount_minor": 0}
    counted = sql(
        stack,
        "SELECT amount_minor, outcome FROM risk.velocity_events WHERE payment_id = %s",
        risk_input.payment_id,
    )
    assert counted == [(1000, "approve")]


def test_velocity_burst_from_one_customer_goes_to_review_when_hourly_count_is_exceeded(
    kyc: ApiClient, stack: Stack
) -> None:
    customer_id = customer(kyc, stack)
    outcomes = [assess(stack, payment_input(customer_id)) for _ in range(6)]
    assert [d.outcome for d in outcomes] == ["approve"] * 5 + ["review"]
    held = outcomes[-1]
    assert held.reasons == ("velocity_count_1h",)
    assert held.review_id is not None
    ((status, reasons, decision_id),) = sql(
        stack,
        "SELECT status, reasons, decision_id FROM risk.reviews WHERE id = %s",
        held.review_id,
    )
    assert (status, reasons, decision_id) == ("open", ["velocity_count_1h"], held.decision_id)
    # Another customer is not held by the first one's burst.
    assert assess(stack, payment_input(customer(kyc, stack))).outcome == "approve"


def test_velocity_amount_goes_to_review_when_the_hourly_sum_is_exceeded(
    kyc: ApiClient, stack: Stack
) -> None:
    customer_id = customer(kyc, stack)
    assert assess(stack, payment_input(customer_id, 200_000)).outcome == "approve"
    # Another currency's amounts do not add up with euros.
    assert assess(stack, payment_input(customer_id, 90_000, "USD")).outcome == "approve"
    held = assess(stack, payment_input(customer_id, 100_001))
    assert (held.outcome, held.reasons) == ("review", ("velocity_amount_1h",))


def test_new_customer_gets_lower_limits_when_younger_than_thirty_days(
    kyc: ApiClient, stack: Stack
) -> None:
    young = customer(kyc, stack, age_days=2)
    outcomes = [assess(stack, payment_input(young)).outcome for _ in range(4)]
    assert outcomes == ["approve", "approve", "approve", "review"]
    big = assess(stack, payment_input(customer(kyc, stack, age_days=2), 25_001))
    assert big.reasons == ("new_customer_amount",)
    assert assess(stack, payment_input(customer(kyc, stack), 25_001)).outcome == "approve"


def test_payment_is_declined_when_country_is_blocked_or_kyc_is_not_verified(
    kyc: ApiClient, stack: Stack
) -> None:
    blocked = assess(stack, payment_input(customer(kyc, stack, country="KP")))
    assert (blocked.outcome, blocked.reasons, blocked.review_id) == (
        "decline",
        ("country_blocked",),
        None,
    )
    pending = assess(stack, payment_input(customer(kyc, stack, verified=False)))
    assert pending.reasons == ("kyc_not_verified",)
    basic = assess(stack, payment_input(customer(kyc, stack, date_of_birth=None), 100_001))
    assert (basic.outcome, basic.reasons) == ("decline", ("amount_over_tier_limit",))


def test_same_payment_counts_once_and_keeps_its_review_when_assessed_twice(
    kyc: ApiClient, stack: Stack
) -> None:
    customer_id = customer(kyc, stack, age_days=2)
    for _ in range(3):
        assess(stack, payment_input(customer_id))
    held_input = payment_input(customer_id)
    first = assess(stack, held_input)
    again = assess(stack, held_input)
    assert first.outcome == again.outcome == "review"
    assert first.review_id == again.review_id
    ((count,),) = sql(
        stack, "SELECT count(*) FROM risk.velocity_events WHERE customer_id = %s", customer_id
    )
    assert count == 4


def test_concurrent_burst_approves_exactly_the_limit_when_payments_race(
    kyc: ApiClient, stack: Stack
) -> None:
    customer_id = customer(kyc, stack)
    assert stack.database_url is not None
    url = stack.database_url

    async def burst() -> list[str]:
        engine = create_engine(url, pool_size=10)
        opa = Opa(stack.opa_url, timeout_ms=10_000)

        async def one() -> str:
            async with session_factory(engine)() as session, session.begin():
                decision = await risk_api.assess_payment(
                    session, opa, payment_input(customer_id), timeout_ms=5000
                )
                return decision.outcome

        try:
            return list(await asyncio.gather(*(one() for _ in range(10))))
        finally:
            await opa.close()
            await engine.dispose()

    outcomes = asyncio.run(burst())
    assert sorted(outcomes) == ["approve"] * 5 + ["review"] * 5


def test_payment_goes_to_review_never_approve_when_opa_is_stopped(
    kyc: ApiClient, stack: Stack, tmp_path: Path
) -> None:
    risk_input = payment_input(customer(kyc, stack))
    with _own_opa(tmp_path, REPO_ROOT / "policies") as own:
        # A payment like it is approved while this OPA runs...
        running = assess(stack, payment_input(risk_input.customer_id), opa_url=own.opa_url)
        assert running.outcome == "approve"
        own.stop("opa")
        # ...and this one is held for a person once OPA is really stopped.
        decision = assess(stack, risk_input, opa_url=own.opa_url)
    assert decision.outcome == "review"
    assert decision.reasons == (risk_api.REASON_ENGINE_UNAVAILABLE,)
    assert decision.decision_id is None
    assert decision.review_id is not None
    ((decision_id, details),) = _audit_rows(stack, risk_input.payment_id)
    assert decision_id is None
    assert details["reasons"] == [risk_api.REASON_ENGINE_UNAVAILABLE]


def test_payment_goes_to_review_within_the_time_box_when_opa_is_slow(
    kyc: ApiClient, stack: Stack, tmp_path: Path
) -> None:
    # OPA's policy calls a socket that accepts connections but never answers, so the real
    # OPA is slow; had it answered, it would have approved.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        slow = f"""package moneypath.risk

import rego.v1

decision := {{"outcome": "approve", "reasons": []}} if {{
\thttp.send({{"method": "GET", "url": "http://127.0.0.1:{port}/", "timeout": "5s"}})
}}
"""
        risk_input = payment_input(customer(kyc, stack))
        with _own_opa(tmp_path, _policies_with_risk(tmp_path, slow)) as own:
            started = time.monotonic()
            decision = assess(stack, risk_input, opa_url=own.opa_url, timeout_ms=200)
            elapsed_s = time.monotonic() - started
    assert decision.outcome == "review"
    assert decision.reasons == (risk_api.REASON_ENGINE_TIMEOUT,)
    # The whole assessment (customer read, counters, audit) within well under OPA's 5 s.
    assert elapsed_s < 2.0


@pytest.mark.parametrize(
    "answer",
    [
        '{"outcome": "yes", "reasons": []}',
        '{"outcome": "approve", "reasons": ["velocity_count_1h"]}',
        '{"outcome": "review", "reasons": []}',
        '{"outcome": "approve"}',
        '"approve"',
        '{"outcome": "approve", "reasons": [], "extra": 1}',
        '{"outcome": "decline", "reasons": [42]}',
    ],
)
def test_payment_goes_to_review_when_opa_answers_nonsense(
    answer: str, kyc: ApiClient, stack: Stack, tmp_path: Path
) -> None:
    nonsense = f"package moneypath.risk\n\ndecision := {answer}\n"
    risk_input = payment_input(customer(kyc, stack))
    with _own_opa(tmp_path, _policies_with_risk(tmp_path, nonsense)) as own:
        decision = assess(stack, risk_input, opa_url=own.opa_url)
    assert decision.outcome == "review"
    assert decision.reasons == (risk_api.REASON_ENGINE_INVALID_ANSWER,)
    # OPA did answer, so its decision id is kept for the audit trail.
    assert decision.decision_id is not None
    ((decision_id, details),) = _audit_rows(stack, risk_input.payment_id)
    assert decision_id == decision.decision_id
    assert json.dumps(details["reasons"]) == '["risk_engine_invalid_answer"]'


def test_payment_goes_to_review_when_the_policy_is_missing(
    kyc: ApiClient, stack: Stack, tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    shutil.copy(REPO_ROOT / "policies" / "authz.rego", policies / "authz.rego")
    risk_input = payment_input(customer(kyc, stack))
    with _own_opa(tmp_path, policies) as own:
        decision = assess(stack, risk_input, opa_url=own.opa_url)
    assert (decision.outcome, decision.reasons) == (
        "review",
        (risk_api.REASON_ENGINE_INVALID_ANSWER,),
    )


def test_pruning_deletes_only_rows_older_than_the_longest_window_when_run(
    kyc: ApiClient, stack: Stack
) -> None:
    customer_id = customer(kyc, stack)
    old, recent = payment_input(customer_id), payment_input(customer_id)
    assess(stack, old)
    assess(stack, recent)
    sql(
        stack,
        "UPDATE risk.velocity_events SET occurred_at = now() - interval '25 hours'"
        " WHERE payment_id = %s",
        old.payment_id,
    )

    async def prune(session: Any) -> int:
        return await risk_api.prune_velocity(session, batch=10_000)

    assert in_transaction(stack, prune) >= 1
    left = sql(
        stack,
        "SELECT payment_id FROM risk.velocity_events WHERE customer_id = %s",
        customer_id,
    )
    assert left == [(recent.payment_id,)]


def test_worker_cycle_prunes_velocity_rows_when_they_outlive_the_longest_window(
    kyc: ApiClient, stack: Stack
) -> None:
    from app.entrypoints import worker

    customer_id = customer(kyc, stack)
    old = payment_input(customer_id)
    assess(stack, old)
    sql(
        stack,
        "UPDATE risk.velocity_events SET occurred_at = now() - interval '2 days'"
        " WHERE payment_id = %s",
        old.payment_id,
    )

    async def cycle() -> Any:
        assert stack.database_url is not None
        engine = create_engine(stack.database_url, pool_size=2)
        try:
            return await worker.run_cycle(session_factory(engine))
        finally:
            await engine.dispose()

    report = asyncio.run(cycle())
    assert report.velocity_rows_pruned >= 1
    assert (
        sql(stack, "SELECT 1 FROM risk.velocity_events WHERE payment_id = %s", old.payment_id) == []
    )

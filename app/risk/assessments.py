"""Assessing a payment: velocity counters from PostgreSQL, one time-boxed OPA decision.

The assessment runs in the caller's transaction (the payment saga's), so the velocity row,
the review (if any) and the audit record commit together with the payment step, or not at
all. Concurrent payments of one customer are serialised by a transaction-scoped advisory
lock, so two of them cannot both read the counters before either is counted.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import Counter, Histogram
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.identity import api as identity_api
from app.platform import audit
from app.platform.opa import Opa, OpaUnavailableError
from app.risk import domain
from app.risk.domain import Outcome, PolicyAnswer, WindowCounter

log = structlog.get_logger("moneypath.risk")

POLICY_PATH = "moneypath/risk/decision"

DECISIONS = Counter(
    "moneypath_risk_decisions_total",
    "Risk decisions by outcome, and whether the policy answered (or the fallback decided).",
    ["outcome", "source"],
)
DECISION_LATENCY = Histogram(
    "moneypath_risk_decision_duration_seconds",
    "Time spent asking OPA for a risk decision, timeouts included.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


@dataclass(frozen=True, slots=True)
class RiskInput:
    """The payment being assessed, as the saga knows it.

    The customer's country, KYC tier and age are looked up here from identity, so every
    caller assesses the same facts.
    """

    payment_id: str
    client_id: str
    customer_id: str
    amount_minor: int
    currency: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """The outcome with its reason codes.

    `decision_id` is OPA's decision id (None when OPA gave no answer), and `review_id` is
    the review opened for an outcome of `review` (None otherwise).
    """

    outcome: Outcome
    reasons: tuple[str, ...]
    decision_id: str | None
    review_id: str | None


_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended('risk:' || :customer_id, 0))")


def _counters_sql(windows_s: Mapping[str, int]) -> str:
    """One statement for every window: each a count and a same-currency sum over the rows
    younger than the window (the windows are our constants, never request input)."""
    columns = []
    for index, window_s in enumerate(windows_s.values()):
        younger = f"occurred_at > now() - interval '{int(window_s)} seconds'"
        columns.append(f"count(*) FILTER (WHERE {younger}) AS count_{index}")
        columns.append(
            f"coalesce(sum(amount_minor) FILTER (WHERE {younger} AND currency = :currency), 0)"
            f" AS amount_{index}"
        )
    longest_s = max(windows_s.values())
    return (
        f"SELECT {', '.join(columns)} FROM risk.velocity_events"  # noqa: S608 - constants
        " WHERE customer_id = :customer_id AND payment_id <> :payment_id"
        f" AND occurred_at > now() - interval '{int(longest_s)} seconds'"
    )


_COUNTERS = text(_counters_sql(domain.VELOCITY_WINDOWS_S))

_COUNT = text(
    """
    INSERT INTO risk.velocity_events (payment_id, customer_id, currency, amount_minor, outcome)
    VALUES (:payment_id, :customer_id, :currency, :amount_minor, :outcome)
    ON CONFLICT (payment_id) DO NOTHING
    """
)

_OPEN_REVIEW = text(
    """
    INSERT INTO risk.reviews
        (id, payment_id, client_id, customer_id, amount_minor, currency, reasons, decision_id)
    VALUES (:id, :payment_id, :client_id, :customer_id, :amount_minor, :currency,
            :reasons, :decision_id)
    ON CONFLICT (payment_id) DO UPDATE SET payment_id = EXCLUDED.payment_id
    RETURNING id
    """
)


async def velocity(
    session: AsyncSession, customer_id: str, currency: str, payment_id: str
) -> dict[str, WindowCounter]:
    """The customer's counters per window, leaving out `payment_id` itself (a re-assessment
    of the same payment must not count it twice)."""
    row = (
        await session.execute(
            _COUNTERS,
            {"customer_id": customer_id, "currency": currency, "payment_id": payment_id},
        )
    ).one()
    counters: dict[str, WindowCounter] = {}
    for index, name in enumerate(domain.VELOCITY_WINDOWS_S):
        counters[name] = WindowCounter(
            count=int(row[2 * index]), amount_minor=int(row[2 * index + 1])
        )
    return counters


async def _ask_policy(
    opa: Opa, document: dict[str, Any], timeout_ms: int
) -> tuple[PolicyAnswer | None, str | None, str | None]:
    """(answer, OPA decision id, fallback reason). The answer is None when OPA was slow,
    down or said something other than the documented shape; the reason says which."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(timeout_ms / 1000):
            response = await opa.evaluate(POLICY_PATH, document)
    except TimeoutError:
        return None, None, domain.REASON_ENGINE_TIMEOUT
    except OpaUnavailableError:
        return None, None, domain.REASON_ENGINE_UNAVAILABLE
    except Exception as error:  # noqa: BLE001 - any failure to get an answer means review
        # The OPA client library may raise its own types for a refused connection or a
        # broken body; whatever it is, the payment is held for a person, never failed open.
        log.warning("risk_engine_error", error_type=type(error).__name__)
        return None, None, domain.REASON_ENGINE_UNAVAILABLE
    finally:
        DECISION_LATENCY.observe(loop.time() - started)
    raw_id = response.get("decision_id")
    decision_id = raw_id if isinstance(raw_id, str) else None
    answer = domain.read_answer(response)
    if answer is None:
        return None, decision_id, domain.REASON_ENGINE_INVALID_ANSWER
    return answer, decision_id, None


async def assess(
    session: AsyncSession,
    opa: Opa,
    risk_input: RiskInput,
    *,
    timeout_ms: int,
) -> RiskDecision:
    profile = await identity_api.customer_risk_profile(session, risk_input.customer_id)
    await session.execute(_LOCK, {"customer_id": risk_input.customer_id})
    counters = await velocity(
        session, risk_input.customer_id, risk_input.currency, risk_input.payment_id
    )
    moment = datetime.now(UTC)
    document = domain.policy_input(
        payment_id=risk_input.payment_id,
        amount_minor=risk_input.amount_minor,
        currency=risk_input.currency,
        customer_id=profile.customer_id,
        country=profile.country,
        tier=domain.kyc_tier(profile.kyc_status, profile.has_date_of_birth),
        customer_age_days=domain.age_days(profile.created_at, moment),
        velocity=counters,
    )
    answer, decision_id, fallback = await _ask_policy(opa, document, timeout_ms)
    if answer is None:
        # No usable answer is never an approval: a person looks at the payment instead.
        outcome: Outcome = "review"
        reasons: tuple[str, ...] = (fallback or domain.REASON_ENGINE_INVALID_ANSWER,)
        log.warning("risk_fallback_review", reason=reasons[0], payment_id=risk_input.payment_id)
    else:
        outcome, reasons = answer.outcome, answer.reasons
    DECISIONS.labels(outcome=outcome, source="fallback" if answer is None else "policy").inc()
    await session.execute(
        _COUNT,
        {
            "payment_id": risk_input.payment_id,
            "customer_id": risk_input.customer_id,
            "currency": risk_input.currency,
            "amount_minor": risk_input.amount_minor,
            "outcome": outcome,
        },
    )
    review_id: str | None = None
    if outcome == "review":
        review_id = (
            await session.execute(
                _OPEN_REVIEW,
                {
                    "id": "rvw_" + secrets.token_hex(12),
                    "payment_id": risk_input.payment_id,
                    "client_id": risk_input.client_id,
                    "customer_id": risk_input.customer_id,
                    "amount_minor": risk_input.amount_minor,
                    "currency": risk_input.currency,
                    "reasons": list(reasons),
                    "decision_id": decision_id,
                },
            )
        ).scalar_one()
    await audit.record(
        session,
        audit.AuditEvent(
            actor=risk_input.client_id,
            event_type="risk.assessed",
            outcome="success",
            request_id=risk_input.request_id,
            origin_ip=None,
            resource_type="payment",
            resource_id=risk_input.payment_id,
            decision_id=decision_id,
            details=_audit_details(outcome, reasons, review_id, counters),
        ),
    )
    return RiskDecision(
        outcome=outcome, reasons=reasons, decision_id=decision_id, review_id=review_id
    )


def _audit_details(
    outcome: str,
    reasons: tuple[str, ...],
    review_id: str | None,
    counters: Mapping[str, WindowCounter],
) -> dict[str, Any]:
    return {
        "risk_outcome": outcome,
        "reasons": list(reasons),
        "review_id": review_id,
        "velocity": {
            name: {"count": c.count, "amount_minor": c.amount_minor} for name, c in counters.items()
        },
    }


PRUNE_BATCH_SIZE = 1000

_PRUNE = text(
    """
    DELETE FROM risk.velocity_events WHERE payment_id IN (
        SELECT payment_id FROM risk.velocity_events
        WHERE occurred_at < now() - make_interval(secs => :keep_s)
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    """
)


async def prune_velocity(session: AsyncSession, *, batch: int = PRUNE_BATCH_SIZE) -> int:
    """Delete up to `batch` velocity rows older than the longest window: no counter reads
    them again (each decision's audit record keeps the counters it saw). Returns how many."""
    keep_s = max(domain.VELOCITY_WINDOWS_S.values())
    result = await session.execute(_PRUNE, {"keep_s": keep_s, "batch": batch})
    return int(getattr(result, "rowcount", 0) or 0)

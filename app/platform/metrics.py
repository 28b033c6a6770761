"""The money-path metrics (prometheus-client), and small functions to record them.

Every domain records through the functions here rather than touching the metric objects,
so names, labels and units live in one place and the README's table can be checked
against this module (the provider adapters keep their own three, next to the breaker, in
`app/providers/caller.py`; the webhook deliveries theirs in `app/payments/webhook_delivery.py`).
Label values always come from small closed sets (codes, outcomes,
provider names, route templates): never ids, amounts or anything a client picks freely.
"""

from __future__ import annotations

from typing import TypeVar

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from app.platform.cost_model import CostModel

M = TypeVar("M", bound=MetricWrapperBase)
# `labels()` takes a lock and builds and checks the label tuple on every call (about 2.4 µs,
# issue 16); a signed request records about ten samples. The children are kept here
# instead. Label values come from closed sets (above), so this stays small; the cap only
# guards against a caller that breaks that rule (past it, children are not remembered).
_CHILD_CACHE_LIMIT = 4096
_children: dict[tuple[MetricWrapperBase, tuple[tuple[str, str], ...]], MetricWrapperBase] = {}


def child(metric: M, **labels: str) -> M:
    """`metric.labels(**labels)`, remembered: the same child object prometheus-client keeps."""
    key = (metric, tuple(labels.items()))
    found = _children.get(key)
    if found is None:
        found = metric.labels(**labels)
        if len(_children) < _CHILD_CACHE_LIMIT:
            _children[key] = found
    return found  # type: ignore[return-value]


# Sub-millisecond buckets: a token check or an OPA decision takes well under 1 ms on a
# warm process, and the interesting tail is 5-250 ms.
_FAST_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

AUTHORIZATION_SECONDS = Histogram(
    "moneypath_authorization_duration_seconds",
    "Time to authorize a request, by stage: token, signature (and nonce), policy (OPA).",
    ["stage"],
    buckets=_FAST_BUCKETS_S,
)
OPA_DECISION_SECONDS = Histogram(
    "moneypath_opa_decision_duration_seconds",
    "One OPA decision round trip, by outcome: allow, deny, error.",
    ["outcome"],
    buckets=_FAST_BUCKETS_S,
)
SIGNATURE_REJECTIONS = Counter(
    "moneypath_signature_rejections_total",
    "Requests refused by the RFC 9421 signature check, by problem code.",
    ["code"],
)
LEDGER_WRITES = Counter(
    "moneypath_ledger_writes_total",
    "Ledger write requests, by operation and outcome (success, a problem code, or error).",
    ["operation", "outcome"],
)
IDEMPOTENT_REPLAYS = Counter(
    "moneypath_idempotent_replays_total",
    "Requests answered from a stored outcome (Idempotent-Replayed: true), by route.",
    ["route"],
)
DEPENDENCY_UNAVAILABLE = Counter(
    "moneypath_dependency_unavailable_total",
    "Requests answered 503 because a dependency (db, opa, vault) could not answer.",
    ["dependency"],
)
PAYMENTS = Counter(
    "moneypath_payments_total",
    "Payment state changes, by the status reached and the provider.",
    ["status", "provider"],
)
OUTBOX_DEPTH = Gauge("moneypath_outbox_depth", "Outbox events not yet published.")
OUTBOX_OLDEST_AGE_SECONDS = Gauge(
    "moneypath_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox event."
)
RECONCILIATION_LAG_SECONDS = Gauge(
    "moneypath_reconciliation_lag_seconds",
    "Age of the oldest settled provider transaction no reconciliation run has covered yet,"
    " by provider.",
    ["provider"],
)
RECONCILIATION_OPEN_DISCREPANCIES = Gauge(
    "moneypath_reconciliation_open_discrepancies",
    "Reconciliation exceptions still open, by provider.",
    ["provider"],
)
RECONCILIATION_EVIDENCE_OWED = Gauge(
    "moneypath_reconciliation_evidence_owed",
    "Reconciliation runs whose recon.run evidence record is not written yet.",
)
COST_MICROS = Counter(
    "moneypath_cost_micros_total",
    "Variable cost attributed by the cost model, in millionths of its currency, by component.",
    ["component"],
)
FIXED_COST_MICROS_PER_SECOND = Gauge(
    "moneypath_fixed_cost_micros_per_second",
    "The cost model's fixed (infrastructure) cost spread over time, millionths per second.",
)

_SIGNATURE_CODES = frozenset(
    {
        "signature_required",
        "invalid_signature",
        "stale_request",
        "digest_mismatch",
        "replayed_request",
        "key_not_bound",
    }
)
_cost_model = CostModel()


def configure_cost_model(model: CostModel) -> None:
    """Use `model` for every cost recorded from now on (the API calls this at start-up)."""
    global _cost_model
    _cost_model = model
    FIXED_COST_MICROS_PER_SECOND.set(model.fixed_micros_per_second())


def record_authorization(stage: str, duration_s: float) -> None:
    child(AUTHORIZATION_SECONDS, stage=stage).observe(duration_s)


def record_authorized_request() -> None:
    child(COST_MICROS, component="authorization").inc(_cost_model.authorization_micros)


def record_opa_decision(outcome: str, duration_s: float) -> None:
    child(OPA_DECISION_SECONDS, outcome=outcome).observe(duration_s)


def record_signature_rejection(code: str) -> None:
    """Count a 401 from the signature check; other codes are not signature rejections."""
    if code in _SIGNATURE_CODES:
        SIGNATURE_REJECTIONS.labels(code=code).inc()


def record_ledger_write(operation: str, outcome: str) -> None:
    child(LEDGER_WRITES, operation=operation, outcome=outcome).inc()
    if outcome == "success":
        child(COST_MICROS, component="ledger_write").inc(_cost_model.ledger_write_micros)


def record_idempotent_replay(route: str) -> None:
    child(IDEMPOTENT_REPLAYS, route=route).inc()


def record_dependency_unavailable(dependency: str) -> None:
    DEPENDENCY_UNAVAILABLE.labels(dependency=dependency).inc()


def record_payment(status: str, provider: str, amount_minor: int = 0, exponent: int = 2) -> None:
    """A payment reached `status`; a captured amount also costs the provider's fee."""
    PAYMENTS.labels(status=status, provider=provider).inc()
    if status == "captured" and amount_minor > 0:
        fee = _cost_model.provider_fee_micros(provider, amount_minor, exponent)
        COST_MICROS.labels(component="provider_fee").inc(fee)


def set_outbox(depth: int, oldest_age_s: float) -> None:
    OUTBOX_DEPTH.set(depth)
    OUTBOX_OLDEST_AGE_SECONDS.set(oldest_age_s)


def set_reconciliation(provider: str, lag_s: float, open_discrepancies: int) -> None:
    RECONCILIATION_LAG_SECONDS.labels(provider=provider).set(lag_s)
    RECONCILIATION_OPEN_DISCREPANCIES.labels(provider=provider).set(open_discrepancies)


def set_reconciliation_evidence_owed(runs: int) -> None:
    RECONCILIATION_EVIDENCE_OWED.set(runs)

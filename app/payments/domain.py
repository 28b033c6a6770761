"""Pure payment rules: the status machine as one transition table, and the refund bound.

No I/O here. Every place that changes a payment's status (the API actions, the saga, the
recovery worker and inbound provider webhooks) asks `transition` for the next status, so
the machine of API.md lives in exactly one table below.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from app.platform.errors import ConflictError, DomainError, NotFoundError, ValidationError


class PaymentStatus(StrEnum):
    # `pending` extends API.md's list: a payment whose authorization has not yet come back
    # (the provider timed out, or the process died mid-call) and that the recovery
    # worker will settle after asking the provider what happened.
    PENDING = "pending"
    PENDING_REVIEW = "pending_review"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    VOIDED = "voided"
    DECLINED = "declined"
    FAILED = "failed"


class PaymentEvent(StrEnum):
    REVIEW_REQUIRED = "review_required"
    REVIEW_APPROVED = "review_approved"
    REVIEW_REJECTED = "review_rejected"
    RISK_DECLINED = "risk_declined"
    AUTHORIZED = "authorized"
    PROVIDER_DECLINED = "provider_declined"
    PROVIDER_FAILED = "provider_failed"
    CAPTURED = "captured"
    VOIDED = "voided"
    REFUNDED_IN_PART = "refunded_in_part"
    REFUNDED_IN_FULL = "refunded_in_full"


S = PaymentStatus
E = PaymentEvent

# Every saga step the code may record. docs/money-path.md draws each one; a test keeps the
# two equal, and `store.add_step` refuses a name missing here.
STEP_NAMES = frozenset(
    {
        "risk_check",
        "risk_review",
        "route",
        "authorize",
        "ledger_hold",
        "capture",
        "ledger_capture",
        "release_remainder",
        "void",
        "ledger_release",
        "refund",
        "ledger_refund",
        "payout",
        "ledger_debit",
    }
)

# The whole machine. A (status, event) pair missing here is not allowed.
TRANSITIONS: dict[tuple[PaymentStatus, PaymentEvent], PaymentStatus] = {
    (S.PENDING, E.REVIEW_REQUIRED): S.PENDING_REVIEW,
    (S.PENDING, E.RISK_DECLINED): S.DECLINED,
    (S.PENDING, E.AUTHORIZED): S.AUTHORIZED,
    (S.PENDING, E.PROVIDER_DECLINED): S.DECLINED,
    (S.PENDING, E.PROVIDER_FAILED): S.FAILED,
    # An approved review goes back to `pending` and the saga authorizes it.
    (S.PENDING_REVIEW, E.REVIEW_APPROVED): S.PENDING,
    (S.PENDING_REVIEW, E.REVIEW_REJECTED): S.DECLINED,
    (S.AUTHORIZED, E.CAPTURED): S.CAPTURED,
    (S.AUTHORIZED, E.VOIDED): S.VOIDED,
    (S.CAPTURED, E.REFUNDED_IN_PART): S.PARTIALLY_REFUNDED,
    (S.CAPTURED, E.REFUNDED_IN_FULL): S.REFUNDED,
    (S.PARTIALLY_REFUNDED, E.REFUNDED_IN_PART): S.PARTIALLY_REFUNDED,
    (S.PARTIALLY_REFUNDED, E.REFUNDED_IN_FULL): S.REFUNDED,
}

FINAL_STATUSES = frozenset({S.REFUNDED, S.VOIDED, S.DECLINED, S.FAILED})

# How far along the money path a status is. A provider event that would move a payment
# back (a late `authorized` after `captured`) is stale and ignored, never applied.
PROGRESS: dict[PaymentStatus, int] = {
    S.PENDING: 0,
    S.PENDING_REVIEW: 1,
    S.AUTHORIZED: 2,
    S.CAPTURED: 3,
    S.PARTIALLY_REFUNDED: 4,
    S.REFUNDED: 5,
    S.VOIDED: 5,
    S.DECLINED: 5,
    S.FAILED: 5,
}


class PaymentNotFoundError(NotFoundError):
    title = "Payment not found"


class InvalidStateError(ConflictError):
    title = "The payment's status does not allow this action"


class RefundExceedsCapturedError(DomainError):
    status = 422
    title = "Refund exceeds the captured amount"


class CaptureExceedsAuthorizedError(ValidationError):
    title = "Capture exceeds the authorized amount"


def transition(status: PaymentStatus, event: PaymentEvent) -> PaymentStatus:
    """The status after `event`, or InvalidStateError (409) when the table forbids it."""
    target = TRANSITIONS.get((status, event))
    if target is None:
        raise InvalidStateError(f"a {status.value} payment cannot take {event.value}")
    return target


def allows(status: PaymentStatus, event: PaymentEvent) -> bool:
    return (status, event) in TRANSITIONS


def is_stale(status: PaymentStatus, event: PaymentEvent) -> bool:
    """True when a (provider) event reports a state the payment has already moved past."""
    target = EVENT_TARGETS.get(event)
    return target is not None and PROGRESS[target] <= PROGRESS[status] and target != status


# What each event would lead to from its usual source, for the staleness check.
EVENT_TARGETS: dict[PaymentEvent, PaymentStatus] = {}
for (_source, _event), _target in TRANSITIONS.items():
    EVENT_TARGETS.setdefault(_event, _target)


def refundable_minor(captured_minor: int, refund_amounts_not_failed: Iterable[int]) -> int:
    """The refund bound: captured minus every refund that has not failed."""
    return captured_minor - sum(refund_amounts_not_failed)


def check_refund(
    captured_minor: int, refund_amounts_not_failed: Iterable[int], amount_minor: int
) -> None:
    """Raise RefundExceedsCapturedError when `amount_minor` is above the refund bound."""
    available = refundable_minor(captured_minor, refund_amounts_not_failed)
    if amount_minor > available:
        raise RefundExceedsCapturedError(
            f"refund of {amount_minor} exceeds the {available} still refundable",
            refundable_minor=available,
        )


def refund_event(captured_minor: int, refunded_after_minor: int) -> PaymentEvent:
    """Whether a refund that brings the total to `refunded_after_minor` empties the payment."""
    if refunded_after_minor >= captured_minor:
        return PaymentEvent.REFUNDED_IN_FULL
    return PaymentEvent.REFUNDED_IN_PART


def check_capture(authorized_minor: int, amount_minor: int) -> None:
    if not 1 <= amount_minor <= authorized_minor:
        raise CaptureExceedsAuthorizedError(
            f"capture of {amount_minor} must lie in [1, {authorized_minor}]"
        )

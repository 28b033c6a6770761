"""Pure risk rules on the Python side: the input OPA sees and how its answer is read.

The rules themselves (limits, velocity, blocklist) live in `policies/risk.rego`. What stays
here is the contract around them: which velocity windows are counted, how a customer's KYC
tier and age are derived, and the strict reading of OPA's answer. An answer that is not
exactly the documented shape is treated as no answer: the payment goes to review, never
to approve.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from app.platform.errors import ConflictError, NotFoundError

Outcome = Literal["approve", "review", "decline"]
ReviewStatus = Literal["open", "approved", "rejected"]
ReviewVerdict = Literal["approve", "reject"]
KycTier = Literal["none", "basic", "full"]

OUTCOMES: frozenset[str] = frozenset({"approve", "review", "decline"})
REVIEW_STATUSES: tuple[str, ...] = ("open", "approved", "rejected")

# The velocity windows the service counts and the policy limits, by name. Adding one means
# adding it here and giving it limits in risk.rego; the policy test checks every name.
VELOCITY_WINDOWS_S: Mapping[str, int] = {"1h": 3600, "24h": 86_400}

# Reason codes the service itself gives when the policy gave no usable answer.
REASON_ENGINE_UNAVAILABLE = "risk_engine_unavailable"
REASON_ENGINE_TIMEOUT = "risk_engine_timeout"
REASON_ENGINE_INVALID_ANSWER = "risk_engine_invalid_answer"

MAX_REASONS = 32
_REASON = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class ReviewNotFoundError(NotFoundError):
    code = "not_found"


class ReviewAlreadyDecidedError(ConflictError):
    code = "invalid_state"
    title = "Review already decided"


@dataclass(frozen=True, slots=True)
class WindowCounter:
    """Payments assessed for one customer in one window, before the one being assessed."""

    count: int
    amount_minor: int  # in the assessed payment's currency only: amounts never mix currencies


@dataclass(frozen=True, slots=True)
class PolicyAnswer:
    outcome: Outcome
    reasons: tuple[str, ...]


def kyc_tier(kyc_status: str, has_date_of_birth: bool) -> KycTier:
    """A verified customer with a date of birth on file is `full`, without one `basic`.

    Anyone not verified is `none`, which the policy declines.
    """
    if kyc_status != "verified":
        return "none"
    return "full" if has_date_of_birth else "basic"


def age_days(created_at: datetime, now: datetime) -> int:
    """Whole days since the customer was created (never negative under clock skew)."""
    return max(0, (now - created_at).days)


def policy_input(
    *,
    payment_id: str,
    amount_minor: int,
    currency: str,
    customer_id: str,
    country: str,
    tier: KycTier,
    customer_age_days: int,
    velocity: Mapping[str, WindowCounter],
) -> dict[str, Any]:
    """The document `data.moneypath.risk.decision` is asked about."""
    return {
        "payment": {"id": payment_id, "amount_minor": amount_minor, "currency": currency},
        "customer": {
            "id": customer_id,
            "country": country,
            "kyc_tier": tier,
            "age_days": customer_age_days,
        },
        "velocity": {
            name: {"count": counter.count, "amount_minor": counter.amount_minor}
            for name, counter in velocity.items()
        },
    }


def read_answer(document: Mapping[str, Any]) -> PolicyAnswer | None:
    """OPA's `result` as `{outcome, reasons}`, or None when it is anything else.

    Anything else includes an undefined result, an unknown outcome, reasons that are not
    short snake_case strings, and an approval that carries reasons (a rule fired, yet the
    outcome ignores it: the policy is broken, so nobody may be approved by it).
    """
    result = document.get("result")
    if not isinstance(result, dict) or set(result) != {"outcome", "reasons"}:
        return None
    outcome = result["outcome"]
    reasons = result["reasons"]
    if outcome not in OUTCOMES or not isinstance(reasons, list) or len(reasons) > MAX_REASONS:
        return None
    if not all(isinstance(reason, str) and _REASON.match(reason) for reason in reasons):
        return None
    if outcome == "approve" and reasons:
        return None
    if outcome != "approve" and not reasons:
        return None
    return PolicyAnswer(outcome=outcome, reasons=tuple(sorted(set(reasons))))


def review_status(verdict: ReviewVerdict) -> ReviewStatus:
    return "approved" if verdict == "approve" else "rejected"

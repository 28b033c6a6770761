"""The saga's risk check: the seam where `app.risk.api` plugs in.

Until the risk domain lands this is a deliberately minimal rule with the same call shape
(approve / review / decline, reason codes, decision id): amounts above
`REVIEW_ABOVE_MINOR` go to review, everything else is approved. Replace the body of
`assess` with the call to `app.risk.api` and nothing else in payments changes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

RiskDecision = Literal["approve", "review", "decline"]
REVIEW_ABOVE_MINOR = 1_000_000


@dataclass(frozen=True, slots=True)
class RiskAssessment:
    decision: RiskDecision
    reason_codes: tuple[str, ...]
    decision_id: str | None


async def assess(
    session: AsyncSession,
    *,
    payment_id: str,
    owner: str,
    customer_id: str,
    amount_minor: int,
    currency: str,
) -> RiskAssessment:
    """The risk verdict for a new payment (minimal rule; see the module docstring)."""
    del session, owner, customer_id, currency  # the real assessment uses them
    decision_id = "minimal_" + secrets.token_hex(8) + ":" + payment_id
    if amount_minor > REVIEW_ABOVE_MINOR:
        return RiskAssessment("review", ("amount_above_review_threshold",), decision_id)
    return RiskAssessment("approve", (), decision_id)

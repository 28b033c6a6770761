"""What the evidence service's handlers get besides the shared pipeline's services."""

from __future__ import annotations

from dataclasses import dataclass

from app.platform.errors import InvariantViolation
from app.platform.web import Call, Services
from evidence.checkpointer import Checkpointer
from evidence.config import EvidenceSettings
from evidence.signing import TransitSigner
from evidence.trust import SubmitterTrust


@dataclass(slots=True, kw_only=True)
class EvidenceServices(Services):
    settings: EvidenceSettings
    signer: TransitSigner
    # Which writers' records count in OSCAL findings (policies/evidence/trust.rego).
    submitter_trust: SubmitterTrust
    # None in tools that append without running the periodic checkpointer.
    checkpointer: Checkpointer | None = None


def services_of(call: Call) -> EvidenceServices:
    services = call.services
    if not isinstance(services, EvidenceServices):
        raise InvariantViolation(
            "evidence_services", "an evidence handler ran in an app without EvidenceServices"
        )
    return services

"""Our provider vocabulary and the pure rules that map each PSP's words onto it.

Everything here is I/O-free: the value types the adapters return, the errors they raise,
the status tables of `acme` and `globex`, and the decimal-string <-> minor-unit rules.
Amounts are integers of minor units end to end; a decimal string is parsed digit by digit
and never passes through a float.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Literal, NamedTuple, get_args

from app.platform.errors import DependencyUnavailableError, DomainError, ValidationError

ProviderName = Literal["acme", "globex"]
PROVIDERS: tuple[ProviderName, ...] = get_args(ProviderName)
BreakerState = Literal["closed", "open", "half_open"]


class ProviderOutcome(StrEnum):
    """What a provider call did, in our words."""

    APPROVED = "approved"  # done: authorized, captured, voided, refunded or paid out
    DECLINED = "declined"  # a business refusal (card declined, insufficient funds)
    PENDING = "pending"  # accepted, final answer comes later (webhook or lookup)
    FAILED = "failed"  # the provider refused the request itself (bad state, bad amount)


class ProviderOperation(StrEnum):
    AUTHORIZE = "authorize"
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"
    PAYOUT = "payout"
    LOOKUP = "lookup"
    STATUS = "status"
    SETTLEMENT = "settlement"


class ProviderEventType(StrEnum):
    """A provider webhook's meaning, in our words."""

    AUTHORIZED = "authorized"
    DECLINED = "declined"
    CAPTURED = "captured"
    VOIDED = "voided"
    REFUNDED = "refunded"
    PAYOUT_PAID = "payout_paid"
    PAYOUT_FAILED = "payout_failed"


@dataclass(frozen=True, slots=True)
class ProviderResult:
    """One provider operation's answer, mapped onto our vocabulary.

    `provider_reference` is the charge's (or payout's) id at the provider: the same for the
    authorize, every capture, the void and every refund of one payment.
    `operation_reference` is this operation's own id (a capture's or refund's); for an
    authorize or payout it equals `provider_reference`. `attempts` counts HTTP attempts.
    """

    provider: ProviderName
    operation: ProviderOperation
    outcome: ProviderOutcome
    provider_reference: str | None
    operation_reference: str | None
    amount_minor: int | None
    currency: str | None
    raw_status: str
    decline_code: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class ProviderCharge:
    """A charge's amounts as the provider holds them now (its status endpoint)."""

    provider: ProviderName
    provider_reference: str
    amount_minor: int
    currency: str
    captured_minor: int
    refunded_minor: int
    voided: bool


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """A verified provider webhook. `event_id` is the `webhook-id`: deduplicate by it."""

    event_id: str
    provider: ProviderName
    type: ProviderEventType
    raw_type: str
    provider_reference: str
    operation_reference: str | None
    idempotency_key: str | None
    amount_minor: int | None
    currency: str | None
    occurred_at: datetime


SettlementRecordType = Literal["capture", "refund", "payout", "fee", "adjustment"]


class SettlementLine(NamedTuple):
    """One line of a provider's daily settlement file, normalised. (A named tuple: files
    run to a million lines, and a tuple is built several times faster than a dataclass.)

    `provider_references` normally holds one charge or payout id; a line that nets fees
    against a batch lists every reference it covers (many-to-one). `gross_minor` is what
    moved before fees, `net_minor = gross_minor - fee_minor`. All amounts are positive
    integers of minor units; the direction is `record_type`'s.
    """

    provider: ProviderName
    settlement_date: date
    line_number: int
    record_type: SettlementRecordType
    provider_references: tuple[str, ...]
    operation_reference: str | None
    gross_minor: int
    fee_minor: int
    net_minor: int
    currency: str


class UnknownProviderError(ValidationError):
    title = "Unknown provider"


class ProviderUnavailableError(DependencyUnavailableError):
    """The provider gave no usable answer: breaker open, retries exhausted or timed out.

    `attempted` is False only when no request can have reached the provider (the breaker
    was open, or every attempt failed to connect): then another provider may be tried.
    When True the outcome is unknown: ask `lookup` before doing anything else.
    """

    title = "Payment provider unavailable"

    def __init__(
        self,
        detail: str,
        *,
        provider: ProviderName,
        operation: ProviderOperation,
        attempted: bool,
        attempts: int,
    ) -> None:
        super().__init__(detail)
        self.provider = provider
        self.operation = operation
        self.attempted = attempted
        self.attempts = attempts


class WebhookSignatureError(DomainError):
    status = 401
    code = "invalid_signature"
    title = "Webhook signature invalid"


class SettlementFileError(ValidationError):
    """A settlement file that cannot be read: the message names the line and the field."""

    code = "invalid_settlement_file"
    title = "Invalid settlement file"


def provider_name(value: str) -> ProviderName:
    """Narrow a string to a ProviderName. Raises UnknownProviderError."""
    for known in PROVIDERS:
        if value == known:
            return known
    raise UnknownProviderError(f"unknown provider {value[:40]!r}; known: {', '.join(PROVIDERS)}")


# ---- vocabularies ---------------------------------------------------------------------
# acme speaks upper-case statuses on a flat object.
ACME_OUTCOMES: dict[str, ProviderOutcome] = {
    "AUTHORIZED": ProviderOutcome.APPROVED,
    "SETTLED": ProviderOutcome.APPROVED,
    "VOIDED": ProviderOutcome.APPROVED,
    "REFUNDED": ProviderOutcome.APPROVED,
    "PAID": ProviderOutcome.APPROVED,
    "DECLINED": ProviderOutcome.DECLINED,
    "PROCESSING": ProviderOutcome.PENDING,
    "ERROR": ProviderOutcome.FAILED,
}
# globex nests `state` in an envelope and says COMPLETE for every finished operation.
GLOBEX_OUTCOMES: dict[str, ProviderOutcome] = {
    "COMPLETE": ProviderOutcome.APPROVED,
    "REJECTED": ProviderOutcome.DECLINED,
    "IN_FLIGHT": ProviderOutcome.PENDING,
    "INVALID": ProviderOutcome.FAILED,
}
ACME_EVENTS: dict[str, ProviderEventType] = {
    "charge.authorized": ProviderEventType.AUTHORIZED,
    "charge.declined": ProviderEventType.DECLINED,
    "charge.settled": ProviderEventType.CAPTURED,
    "charge.voided": ProviderEventType.VOIDED,
    "refund.settled": ProviderEventType.REFUNDED,
    "payout.paid": ProviderEventType.PAYOUT_PAID,
    "payout.declined": ProviderEventType.PAYOUT_FAILED,
}
GLOBEX_EVENTS: dict[str, ProviderEventType] = {
    "AUTHORISATION_COMPLETE": ProviderEventType.AUTHORIZED,
    "AUTHORISATION_REJECTED": ProviderEventType.DECLINED,
    "CAPTURE_COMPLETE": ProviderEventType.CAPTURED,
    "CANCELLATION_COMPLETE": ProviderEventType.VOIDED,
    "REFUND_COMPLETE": ProviderEventType.REFUNDED,
    "TRANSFER_COMPLETE": ProviderEventType.PAYOUT_PAID,
    "TRANSFER_REJECTED": ProviderEventType.PAYOUT_FAILED,
}


def outcome_of(provider: ProviderName, raw_status: str) -> ProviderOutcome:
    """Map a provider status word onto ours; an unknown word is FAILED, never APPROVED."""
    table = ACME_OUTCOMES if provider == "acme" else GLOBEX_OUTCOMES
    return table.get(raw_status, ProviderOutcome.FAILED)


def event_type_of(provider: ProviderName, raw_type: str) -> ProviderEventType | None:
    """Map a provider event type onto ours; None for one we do not act on."""
    table = ACME_EVENTS if provider == "acme" else GLOBEX_EVENTS
    return table.get(raw_type)


# ---- amounts --------------------------------------------------------------------------
# ISO 4217 minor-unit exponents that are not 2 (globex writes decimal strings, so the
# adapter must know where the point goes). Anything else has two decimals.
EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}
DEFAULT_EXPONENT = 2
CURRENCY_PATTERN = r"^[A-Z]{3}$"  # also the settlement files' CHECK (settlement.py)
_CURRENCY = re.compile(CURRENCY_PATTERN)
_DECIMAL = re.compile(r"^(0|[1-9][0-9]{0,17})(?:\.([0-9]{1,4}))?$")


def exponent_of(currency: str) -> int:
    if not _CURRENCY.match(currency):
        raise ValueError(f"currency {currency[:8]!r} is not three upper-case letters")
    return EXPONENTS.get(currency, DEFAULT_EXPONENT)


def minor_to_decimal(amount_minor: int, currency: str) -> str:
    """1234 EUR -> "12.34"; 1234 JPY -> "1234". Negative amounts are refused."""
    if amount_minor < 0:
        raise ValueError("amounts are never negative")
    exponent = exponent_of(currency)
    if exponent == 0:
        return str(amount_minor)
    whole, fraction = divmod(amount_minor, 10**exponent)
    return f"{whole}.{fraction:0{exponent}d}"


def decimal_to_minor(text: str, currency: str) -> int:
    """ "12.34" EUR -> 1234. Raises ValueError for a malformed string or too many decimals."""
    match = _DECIMAL.match(text.strip())
    if match is None:
        raise ValueError(f"{text[:30]!r} is not a decimal amount")
    whole, fraction = match.group(1), match.group(2) or ""
    exponent = exponent_of(currency)
    if len(fraction) > exponent:
        raise ValueError(f"{text!r} has more decimals than {currency} allows ({exponent})")
    scale: int = 10**exponent
    return int(whole) * scale + int(fraction.ljust(exponent, "0") or "0")

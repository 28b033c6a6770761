"""Pure ledger rules: the transaction lifecycle and the money checks of a request.

Each of these rules has its home here, and only here:
- the lifecycle (which action is allowed from which status) and hold expiry:
  `transition` and `hold_expired`;
- partial post (`_post_movements`) and reversal (`_reverse_legs`), reached only through
  `transition`;
- balancing per currency: `check_legs`.

The rules that need the balances (available balance, overdraft, an account's currency)
live in SQL, in `ledger.apply_entries()` and `ledger.available()` (migration
ledger_0003), which apply the `Movement`s decided here under the balance-row locks.

No I/O (import-linter forbids sqlalchemy, starlette and httpx), so every rule can be
tested on its own and reused by the rooms that do I/O (`accounts`, `transactions`,
`journal`, `maintenance`) and the property tests. It is one job, the ledger's rules, and

"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal

from app.ledger.currencies import EXPONENTS
from app.ledger.errors import (
    InvalidStateError,
    PartialPostUnsupportedError,
    TransactionExpiredError,
    UnbalancedTransactionError,
    UnknownCurrencyError,
)
from app.platform.errors import InvariantViolation, ValidationError

MAX_AMOUNT_MINOR = 2**63 - 1
MIN_POSTINGS = 2
MAX_POSTINGS = 100
MAX_METADATA_BYTES = 4096
# API.md: a hold without expires_at lasts 7 days (about a card authorisation's life), and
# none lasts more than 366 days.
DEFAULT_HOLD_S = 7 * 86_400
MAX_HOLD_S = 366 * 86_400

Direction = Literal["debit", "credit"]
Effect = Literal["posted", "hold", "release"]


class TransactionStatus(StrEnum):
    """API.md "Transaction statuses". The service, the schemas and the migration use these."""

    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


# What a create may ask for, and what a status change leads to (the database keeps the
# first on the transaction row and the second on its one status-change row).
OPENING_STATUSES = (TransactionStatus.POSTED, TransactionStatus.PENDING)
CLOSING_STATUSES = (TransactionStatus.POSTED, TransactionStatus.VOIDED, TransactionStatus.EXPIRED)


class JournalKind(StrEnum):
    """What a journal entry records: a transaction's creation or its one status change."""

    CREATE = "create"
    POST = "post"
    VOID = "void"
    EXPIRE = "expire"


# ---- data -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leg:
    """One requested posting: which account, which side, how much, in which currency."""

    account_id: str
    direction: Direction
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class Movement:
    """One posting row to write: a leg with its effect on the balance buckets."""

    leg: int
    account_id: str
    direction: Direction
    amount_minor: int
    currency: str
    effect: Effect


# ---- money ------------------------------------------------------------------------------


def currency_exponent(code: str) -> int:
    """The minor-unit exponent of `code`. Raises UnknownCurrencyError."""
    exponent = EXPONENTS.get(code)
    if exponent is None:
        if code in EXPONENTS:
            raise UnknownCurrencyError(f"{code} has no minor unit and cannot carry money")
        raise UnknownCurrencyError(f"{code} is not an active ISO 4217 currency")
    return exponent


def check_amount(amount_minor: int) -> None:
    # The schema already refuses these; this guards callers that skip the HTTP layer.
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise ValidationError("amount_minor must be an integer")
    if not 1 <= amount_minor <= MAX_AMOUNT_MINOR:
        raise ValidationError(f"amount_minor must lie in [1, {MAX_AMOUNT_MINOR}]")


def check_legs(legs: Sequence[Leg]) -> None:
    """Count, amounts, currencies and balance per currency.

    Raises ValidationError, UnknownCurrencyError, UnbalancedTransactionError.
    """
    if not MIN_POSTINGS <= len(legs) <= MAX_POSTINGS:
        raise ValidationError(f"a transaction has {MIN_POSTINGS} to {MAX_POSTINGS} postings")
    net: dict[str, int] = {}
    for leg in legs:
        check_amount(leg.amount_minor)
        currency_exponent(leg.currency)
        signed = leg.amount_minor if leg.direction == "debit" else -leg.amount_minor
        net[leg.currency] = net.get(leg.currency, 0) + signed
    unbalanced = sorted(code for code, total in net.items() if total != 0)
    if unbalanced:
        raise UnbalancedTransactionError(
            f"debits do not equal credits in {', '.join(unbalanced)}", currencies=unbalanced
        )


def parse_time(value: str, name: str) -> datetime:
    """Parse an RFC 3339 time with an explicit offset. Raises ValidationError."""
    if len(value) > 64:
        raise ValidationError(f"{name} is too long")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{name} must be an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise ValidationError(f"{name} must carry a UTC offset")
    return parsed.astimezone(UTC)


# ---- the transaction lifecycle ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Create:
    """Open a transaction: posted at once, or pending as a hold until `expires_at`."""

    status: str
    legs: tuple[Leg, ...]
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Post:
    """Post a pending transaction in full, or `amount_minor` of it (partial post)."""

    amount_minor: int | None = None


@dataclass(frozen=True, slots=True)
class Void:
    """Release a pending transaction's hold by request."""


@dataclass(frozen=True, slots=True)
class Expire:
    """Release a pending transaction's hold because its `expires_at` has passed."""


@dataclass(frozen=True, slots=True)
class Reverse:
    """Undo a posted transaction with a new, mirrored one; the original never changes."""


Command = Create | Post | Void | Expire | Reverse


@dataclass(frozen=True, slots=True)
class TransactionFacts:
    """What the lifecycle needs to know of an existing transaction."""

    id: str
    status: TransactionStatus
    legs: tuple[Leg, ...]
    expires_at: datetime | None
    posted_amount_minor: int | None
    reversed_by: str | None


@dataclass(frozen=True, slots=True)
class Change:
    """What a command does.

    `status` is the status it leaves (for Reverse: the new mirror transaction's), `legs`
    the legs of the transaction it creates (Create, Reverse) or posts (Post), and
    `movements` the posting rows to write, in order.
    """

    status: TransactionStatus
    journal_kind: JournalKind | None
    legs: tuple[Leg, ...]
    movements: tuple[Movement, ...]
    expires_at: datetime | None = None
    posted_amount_minor: int | None = None


def hold_expired(expires_at: datetime, now: datetime) -> bool:
    """A hold is over once `now` reaches its `expires_at`: post and void are then refused
    and the worker releases it."""
    return expires_at <= now


def transition(current: TransactionFacts | None, command: Command, now: datetime) -> Change:
    """The one place that decides what a command may do to a transaction, and how.

    `current` is None for Create, the transaction acted on otherwise. Raises
    ValidationError, UnknownCurrencyError, UnbalancedTransactionError (Create),
    InvalidStateError, TransactionExpiredError (Post, Void, Expire, Reverse),
    PartialPostUnsupportedError (Post).
    """
    if isinstance(command, Create):
        if current is not None:
            raise InvariantViolation("ledger.create_is_new", "a create acts on no transaction")
        return _create(command, now)
    if current is None:
        raise InvariantViolation("ledger.transition_target", "the command needs a transaction")
    if isinstance(command, Reverse):
        if current.status is not TransactionStatus.POSTED:
            raise InvalidStateError(
                f"transaction {current.id} is {current.status}; only posted ones reverse",
                status=current.status,
            )
        if current.reversed_by is not None:
            raise InvalidStateError(
                f"transaction {current.id} was already reversed by {current.reversed_by}",
                status=current.status,
            )
        mirror = _reverse_legs(current)
        return _create(Create(TransactionStatus.POSTED, mirror, None), now)
    expires_at = _open_hold(current, expires_if_due=isinstance(command, Expire), now=now)
    releases = [
        Movement(index, leg.account_id, leg.direction, leg.amount_minor, leg.currency, "release")
        for index, leg in enumerate(current.legs)
    ]
    if isinstance(command, Post):
        return _post(current, command.amount_minor, releases, expires_at)
    if isinstance(command, Void):
        return Change(
            TransactionStatus.VOIDED, JournalKind.VOID, current.legs, tuple(releases), expires_at
        )
    return Change(
        TransactionStatus.EXPIRED, JournalKind.EXPIRE, current.legs, tuple(releases), expires_at
    )


def _create(command: Create, now: datetime) -> Change:
    check_legs(command.legs)
    if command.status not in OPENING_STATUSES:
        raise ValidationError("status must be posted or pending")
    status = TransactionStatus(command.status)
    expires_at = _hold_expiry(status, command.expires_at, now)
    effect: Effect = "posted" if status is TransactionStatus.POSTED else "hold"
    movements = tuple(
        Movement(index, leg.account_id, leg.direction, leg.amount_minor, leg.currency, effect)
        for index, leg in enumerate(command.legs)
    )
    return Change(status, JournalKind.CREATE, command.legs, movements, expires_at)


def _hold_expiry(
    status: TransactionStatus, expires_at: datetime | None, now: datetime
) -> datetime | None:
    """A pending transaction's expiry: the one asked for (in the future, at most
    MAX_HOLD_S ahead) or, when none is asked for, DEFAULT_HOLD_S after `now` (its
    creation). A posted one takes none."""
    if status is TransactionStatus.POSTED:
        if expires_at is not None:
            raise ValidationError("expires_at applies to pending transactions only")
        return None
    if expires_at is None:
        return now + timedelta(seconds=DEFAULT_HOLD_S)
    if hold_expired(expires_at, now):
        raise ValidationError("expires_at must lie in the future")
    if (expires_at - now).total_seconds() > MAX_HOLD_S:
        raise ValidationError(f"a hold may last at most {MAX_HOLD_S // 86_400} days")
    return expires_at


def _open_hold(current: TransactionFacts, *, expires_if_due: bool, now: datetime) -> datetime:
    """The hold's expiry, if the transaction is pending and the action still may act on it.

    Post and void need a hold that has not expired; expiry needs one that has.
    """
    if current.status is TransactionStatus.EXPIRED:
        raise TransactionExpiredError(f"transaction {current.id} expired")
    if current.status is not TransactionStatus.PENDING:
        raise InvalidStateError(
            f"transaction {current.id} is {current.status}, not pending", status=current.status
        )
    if current.expires_at is None:
        raise InvariantViolation("ledger.pending_expiry", "a hold without expires_at")
    due = hold_expired(current.expires_at, now)
    if due and not expires_if_due:
        raise TransactionExpiredError(
            f"transaction {current.id} expired at {current.expires_at.isoformat()}"
        )
    if expires_if_due and not due:
        raise InvalidStateError(
            f"transaction {current.id} holds until {current.expires_at.isoformat()}",
            status=current.status,
        )
    return current.expires_at


def _post(
    current: TransactionFacts,
    amount_minor: int | None,
    releases: Sequence[Movement],
    expires_at: datetime,
) -> Change:
    """Release every hold and post in its place: in full, or (partial post, API.md) the
    given amount on both legs of a two-posting transaction, releasing the rest."""
    legs = current.legs
    if amount_minor is not None:
        check_amount(amount_minor)
        if len(legs) != 2:
            raise PartialPostUnsupportedError(
                f"transaction {current.id} has {len(legs)} postings; partial post needs 2"
            )
        if amount_minor > legs[0].amount_minor:
            raise ValidationError("amount_minor exceeds the pending amount")
    movements: list[Movement] = []
    posted: list[Leg] = []
    for release, leg in zip(releases, legs, strict=True):
        amount = leg.amount_minor if amount_minor is None else amount_minor
        movements.append(release)
        movements.append(
            Movement(release.leg, leg.account_id, leg.direction, amount, leg.currency, "posted")
        )
        posted.append(Leg(leg.account_id, leg.direction, amount, leg.currency))
    return Change(
        TransactionStatus.POSTED,
        JournalKind.POST,
        tuple(posted),
        tuple(movements),
        expires_at,
        amount_minor,
    )


def _reverse_legs(current: TransactionFacts) -> tuple[Leg, ...]:
    """The mirror of what was posted: each leg on the other side, for the posted amount
    (the partial amount when a hold was posted in part)."""
    return tuple(
        Leg(
            leg.account_id,
            "credit" if leg.direction == "debit" else "debit",
            leg.amount_minor
            if current.posted_amount_minor is None
            else current.posted_amount_minor,
            leg.currency,
        )
        for leg in current.legs
    )

"""Pure ledger rules: money checks, balancing, balance arithmetic and the journal hash.

No I/O here (import-linter forbids sqlalchemy, starlette and httpx), so every rule can be
tested on its own and reused by the service, the verifier and the property tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import rfc8785

from app.ledger.currencies import EXPONENTS
from app.platform.errors import (
    ConflictError,
    DomainError,
    NotFoundError,
    ValidationError,
)

MAX_AMOUNT_MINOR = 2**63 - 1
MIN_POSTINGS = 2
MAX_POSTINGS = 100
MAX_METADATA_BYTES = 4096
MAX_HOLD_S = 366 * 86_400
GENESIS_HASH = "0" * 64

Direction = Literal["debit", "credit"]
Effect = Literal["posted", "hold", "release"]


# ---- errors (the public ones are re-exported by api.py) ---------------------------------


class UnknownCurrencyError(DomainError):
    status = 422
    title = "Unknown currency"


class UnbalancedTransactionError(DomainError):
    status = 422
    title = "Debits do not equal credits"


class CurrencyMismatchError(DomainError):
    status = 422
    title = "Currency does not match the account"


class InsufficientFundsError(DomainError):
    status = 422
    title = "Insufficient funds"


class UnknownAccountError(DomainError):
    status = 422
    title = "Unknown account"


class PartialPostUnsupportedError(DomainError):
    status = 422
    title = "Partial post needs a two-posting transaction"


class DuplicateAccountCodeError(ConflictError):
    title = "Account code already exists"


class InvalidStateError(ConflictError):
    title = "Transaction is not in a state that allows this"


class TransactionExpiredError(ConflictError):
    title = "Transaction expired"


class AccountNotFoundError(NotFoundError):
    title = "Account not found"


class TransactionNotFoundError(NotFoundError):
    title = "Transaction not found"


# ---- data -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leg:
    """One requested posting: which account, which side, how much, in which currency."""

    account_id: str
    direction: Direction
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class AccountState:
    """An account's rules plus its current balances, as read under the row lock."""

    account_id: str
    currency: str
    normal_balance: Direction
    overdraft_limit_minor: int | None
    posted_minor: int
    pending_debits_minor: int
    pending_credits_minor: int

    @property
    def available_minor(self) -> int:
        return available(
            self.normal_balance,
            self.posted_minor,
            self.pending_debits_minor,
            self.pending_credits_minor,
        )


@dataclass(frozen=True, slots=True)
class Movement:
    """One posting row to write: a leg with its effect on the balance buckets."""

    leg: int
    account_id: str
    direction: Direction
    amount_minor: int
    currency: str
    effect: Effect


@dataclass(slots=True)
class Applied:
    """The result of applying movements: new balances and each row's running balance."""

    balances: dict[str, AccountState]
    balance_after_minor: list[int] = field(default_factory=list)


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


def check_expiry(
    status: str, expires_at: datetime | None, now: datetime, max_hold_s: int = MAX_HOLD_S
) -> None:
    """A pending transaction needs a future `expires_at`; a posted one takes none."""
    if status == "posted":
        if expires_at is not None:
            raise ValidationError("expires_at applies to pending transactions only")
        return
    if expires_at is None:
        raise ValidationError("a pending transaction needs expires_at")
    if expires_at <= now:
        raise ValidationError("expires_at must lie in the future")
    if (expires_at - now).total_seconds() > max_hold_s:
        raise ValidationError(f"a hold may last at most {max_hold_s // 86_400} days")


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


# ---- balances ---------------------------------------------------------------------------


def signed_posted(normal_balance: str, direction: str, amount_minor: int) -> int:
    """How a posted amount moves a balance kept in the account's normal direction."""
    return amount_minor if direction == normal_balance else -amount_minor


def available(
    normal_balance: str, posted_minor: int, pending_debits_minor: int, pending_credits_minor: int
) -> int:
    """API.md: posted minus the pending amounts that would reduce the balance."""
    reducing = pending_debits_minor if normal_balance == "credit" else pending_credits_minor
    return posted_minor - reducing


def apply_movements(accounts: Mapping[str, AccountState], movements: Sequence[Movement]) -> Applied:
    """Apply `movements` in order and refuse any that overdraws an account.

    An account is refused when the movements lower its available balance in total and
    leave it below -overdraft_limit_minor; releasing a hold and posting it in its place
    therefore never fails. Raises InsufficientFundsError, CurrencyMismatchError.
    """
    state = dict(accounts)
    running: list[int] = []
    for movement in movements:
        account = state[movement.account_id]
        if movement.currency != account.currency:
            raise CurrencyMismatchError(
                f"posting {movement.leg} is in {movement.currency} but account "
                f"{account.account_id} is in {account.currency}",
                leg=movement.leg,
            )
        posted = account.posted_minor
        debits = account.pending_debits_minor
        credits = account.pending_credits_minor
        if movement.effect == "posted":
            posted += signed_posted(
                account.normal_balance, movement.direction, movement.amount_minor
            )
        else:
            delta = movement.amount_minor if movement.effect == "hold" else -movement.amount_minor
            if movement.direction == "debit":
                debits += delta
            else:
                credits += delta
        state[movement.account_id] = AccountState(
            account.account_id,
            account.currency,
            account.normal_balance,
            account.overdraft_limit_minor,
            posted,
            debits,
            credits,
        )
        running.append(posted)
    for account_id, after in state.items():
        before = accounts[account_id]
        limit = after.overdraft_limit_minor
        if limit is None or after.available_minor >= before.available_minor:
            continue
        if after.available_minor < -limit:
            raise InsufficientFundsError(
                f"account {account_id} would fall below its overdraft limit",
                account_id=account_id,
            )
    return Applied(balances=state, balance_after_minor=running)


# ---- the journal hash chain -------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """One fixed rendering (microseconds, Z) so a re-read timestamp hashes the same."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_entry(
    *,
    entry_id: str,
    transaction_id: str,
    kind: str,
    occurred_at: datetime,
    detail: Mapping[str, Any],
    postings: Iterable[Mapping[str, Any]],
) -> bytes:
    """RFC 8785 (JCS) bytes of one journal entry.

    Amounts are rendered as decimal strings: JCS follows I-JSON, which cannot carry
    integers beyond 2^53 exactly, and amounts go up to 2^63-1. The sequence number is not
    part of the entry: the prev_hash link already fixes each entry's place in the chain.
    """
    document: Any = {
        "id": entry_id,
        "transaction_id": transaction_id,
        "kind": kind,
        "occurred_at": format_time(occurred_at),
        "detail": {key: _jcs_value(value) for key, value in detail.items()},
        "postings": [
            {key: _jcs_value(value) for key, value in posting.items()} for posting in postings
        ],
    }
    encoded: bytes = rfc8785.dumps(document)
    return encoded


def _jcs_value(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return format_time(value)
    return str(value)


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    """hash = sha256(prev_hash || JCS(entry)), over the raw 32 bytes of prev_hash."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical).hexdigest()


# ---- read models (frozen DTOs re-exported by api.py) ------------------------------------


@dataclass(frozen=True, slots=True)
class Balances:
    posted_minor: int
    pending_debits_minor: int
    pending_credits_minor: int
    available_minor: int


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    code: str
    currency: str
    normal_balance: Direction
    overdraft_limit_minor: int | None
    customer_id: str | None
    metadata: Mapping[str, str]
    created_at: datetime
    balances: Balances
    as_of: datetime | None = None


@dataclass(frozen=True, slots=True)
class Transaction:
    id: str
    status: str
    postings: tuple[Leg, ...]
    expires_at: datetime | None
    description: str | None
    external_ref: str | None
    reverses: str | None
    reversed_by: str | None
    posted_amount_minor: int | None
    created_at: datetime
    status_changed_at: datetime | None


@dataclass(frozen=True, slots=True)
class Entry:
    """One posting row of an account, with the running posted balance after it."""

    id: str
    transaction_id: str
    direction: Direction
    amount_minor: int
    currency: str
    effect: Effect
    created_at: datetime
    balance_after_minor: int


@dataclass(frozen=True, slots=True)
class EntryPage:
    entries: tuple[Entry, ...]
    next_after_id: int | None


@dataclass(frozen=True, slots=True)
class BadEntry:
    seq: int
    entry_id: str | None
    transaction_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    entries_checked: int
    first_bad_entry: BadEntry | None

"""The ledger's refusals: each a stable `code` of API.md, re-exported by api.py."""

from __future__ import annotations

import json

from app.platform.errors import ConflictError, DomainError, NotFoundError


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


# The refusals `ledger.apply_entries()` raises (migrations ledger_0003 and 0004, the home of the
# balance rules), by SQLSTATE. Its DETAIL is JSON: the refused entry's position among the
# entries of the call (`item`) and the account or leg the refusal names.
_REFUSED_IN_SQL: dict[str, tuple[type[DomainError], str]] = {
    "MPLA1": (UnknownAccountError, "account_id"),
    "MPLC1": (CurrencyMismatchError, "leg"),
    "MPLF1": (InsufficientFundsError, "account_id"),
}


def refusal_from_sql(
    sqlstate: str | None, message: str, detail: str | None
) -> tuple[DomainError, int] | None:
    """`ledger.apply_entries()`'s refusal as the API's error and the refused entry's
    position, or None for any other database error."""
    known = _REFUSED_IN_SQL.get(sqlstate or "")
    if known is None:
        return None
    kind, named = known
    facts = json.loads(detail or "{}")
    error = kind(message, **{named: facts.get(named)})
    return error, int(facts.get("item") or 0)

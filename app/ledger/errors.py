"""The ledger's refusals: each a stable `code` of API.md, re-exported by api.py."""

from __future__ import annotations

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

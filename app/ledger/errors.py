"""The ledger's refusals: each a stable `code` of API.md, re-exported by api.py."""

from __future__ import annotations

from app.platform.errors import ConflictError, DomainError, NotFoundError


class UnknownCurrencyError(DomainError):
    status = 422
    code = "unknown_currency"
    title = "Unknown currency"


class UnbalancedTransactionError(DomainError):
    status = 422
    code = "unbalanced_transaction"
    title = "Debits do not equal credits"


class CurrencyMismatchError(DomainError):
    status = 422
    code = "currency_mismatch"
    title = "Currency does not match the account"


class InsufficientFundsError(DomainError):
    status = 422
    code = "insufficient_funds"
    title = "Insufficient funds"


class UnknownAccountError(DomainError):
    status = 422
    code = "unknown_account"
    title = "Unknown account"


class PartialPostUnsupportedError(DomainError):
    status = 422
    code = "partial_post_unsupported"
    title = "Partial post needs a two-posting transaction"


class DuplicateAccountCodeError(ConflictError):
    code = "duplicate_account_code"
    title = "Account code already exists"


class InvalidStateError(ConflictError):
    code = "invalid_state"
    title = "Transaction is not in a state that allows this"


class TransactionExpiredError(ConflictError):
    code = "transaction_expired"
    title = "Transaction expired"


class AccountNotFoundError(NotFoundError):
    title = "Account not found"


class TransactionNotFoundError(NotFoundError):
    title = "Transaction not found"

"""The ledger's JSON shapes (API.md "Ledger"): request and response schemas, and the views
that turn accounts and transactions into response bodies."""

from __future__ import annotations

from typing import Any

from app.ledger import api
from app.platform.utc import rfc3339_or_none

_ID = {"type": "string", "minLength": 1, "maxLength": 64}
AMOUNT_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": api.MAX_AMOUNT_MINOR}
CURRENCY_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^[A-Z]{3}$"}
DIRECTION_SCHEMA: dict[str, Any] = {"type": "string", "enum": ["debit", "credit"]}

NEW_ACCOUNT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["code", "currency", "normal_balance"],
    "properties": {
        "code": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "pattern": "^[A-Za-z0-9][A-Za-z0-9._:/-]*$",
        },
        "currency": CURRENCY_SCHEMA,
        "normal_balance": DIRECTION_SCHEMA,
        "overdraft_limit_minor": {
            "type": ["integer", "null"],
            "minimum": 0,
            "maximum": api.MAX_AMOUNT_MINOR,
        },
        "customer_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 64},
        "metadata": {
            "type": "object",
            "maxProperties": 50,
            "propertyNames": {"maxLength": 40},
            "additionalProperties": {"type": "string", "maxLength": 500},
        },
    },
}

NEW_TRANSACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["postings", "status"],
    "properties": {
        "postings": {
            "type": "array",
            "minItems": 2,
            "maxItems": api.MAX_POSTINGS,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["account_id", "direction", "amount_minor", "currency"],
                "properties": {
                    "account_id": _ID,
                    "direction": DIRECTION_SCHEMA,
                    "amount_minor": AMOUNT_SCHEMA,
                    "currency": CURRENCY_SCHEMA,
                },
            },
        },
        "status": {"type": "string", "enum": [str(status) for status in api.OPENING_STATUSES]},
        "expires_at": {"type": "string", "format": "date-time", "maxLength": 64},
        "description": {"type": "string", "maxLength": 500},
        "external_ref": {"type": "string", "minLength": 1, "maxLength": 128},
    },
}

# Each item is checked against NEW_TRANSACTION_SCHEMA by the handler, so that a refusal
# can name the item's index.
BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["transactions"],
    "properties": {
        "transactions": {
            "type": "array",
            "minItems": 1,
            "maxItems": api.MAX_BATCH_TRANSACTIONS,
            "items": {"type": "object"},
        }
    },
}
# 1,000 items of up to 100 postings would not fit; 1,000 ordinary ones (a few hundred
# bytes each) do, with room.
BATCH_BODY_LIMIT_BYTES = 2 * 1024 * 1024

POST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"amount_minor": AMOUNT_SCHEMA},
}

EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {}}

_BALANCES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["posted", "pending_debits", "pending_credits", "available"],
    "properties": {
        name: {"type": "integer"}
        for name in ("posted", "pending_debits", "pending_credits", "available")
    },
}
ACCOUNT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "code", "currency", "normal_balance", "balances"],
    "properties": {
        "id": {"type": "string"},
        "code": {"type": "string"},
        "currency": {"type": "string"},
        "currency_exponent": {"type": "integer"},
        "normal_balance": DIRECTION_SCHEMA,
        "overdraft_limit_minor": {"type": ["integer", "null"]},
        "customer_id": {"type": ["string", "null"]},
        "metadata": {"type": "object"},
        "created_at": {"type": "string", "format": "date-time"},
        "as_of": {"type": ["string", "null"], "format": "date-time"},
        "balances": _BALANCES_SCHEMA,
    },
}
TRANSACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "status", "postings"],
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": [str(status) for status in api.TransactionStatus]},
        "postings": NEW_TRANSACTION_SCHEMA["properties"]["postings"],
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "description": {"type": ["string", "null"]},
        "external_ref": {"type": ["string", "null"]},
        "reverses": {"type": ["string", "null"]},
        "reversed_by": {"type": ["string", "null"]},
        "posted_amount_minor": {"type": ["integer", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
        "status_changed_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
BATCH_RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["transactions"],
    "properties": {"transactions": {"type": "array", "items": TRANSACTION_SCHEMA}},
}
ENTRIES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["data", "next_cursor"],
    "properties": {
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "transaction_id": {"type": "string"},
                    "direction": DIRECTION_SCHEMA,
                    "amount_minor": {"type": "integer"},
                    "currency": {"type": "string"},
                    "effect": {"type": "string", "enum": ["posted", "hold", "release"]},
                    "created_at": {"type": "string", "format": "date-time"},
                    "balance_after_minor": {"type": "integer"},
                },
            },
        },
        "next_cursor": {"type": ["string", "null"]},
    },
}


def account_json(account: api.Account) -> dict[str, Any]:
    balances = account.balances
    return {
        "id": account.id,
        "code": account.code,
        "currency": account.currency,
        "currency_exponent": api.currency_exponent(account.currency),
        "normal_balance": account.normal_balance,
        "overdraft_limit_minor": account.overdraft_limit_minor,
        "customer_id": account.customer_id,
        "metadata": dict(account.metadata),
        "created_at": rfc3339_or_none(account.created_at),
        "as_of": rfc3339_or_none(account.as_of),
        "balances": {
            "posted": balances.posted_minor,
            "pending_debits": balances.pending_debits_minor,
            "pending_credits": balances.pending_credits_minor,
            "available": balances.available_minor,
        },
    }


def transaction_json(transaction: api.Transaction) -> dict[str, Any]:
    return {
        "id": transaction.id,
        "status": transaction.status,
        "postings": [
            {
                "account_id": leg.account_id,
                "direction": leg.direction,
                "amount_minor": leg.amount_minor,
                "currency": leg.currency,
            }
            for leg in transaction.postings
        ],
        "expires_at": rfc3339_or_none(transaction.expires_at),
        "description": transaction.description,
        "external_ref": transaction.external_ref,
        "reverses": transaction.reverses,
        "reversed_by": transaction.reversed_by,
        "posted_amount_minor": transaction.posted_amount_minor,
        "created_at": rfc3339_or_none(transaction.created_at),
        "status_changed_at": rfc3339_or_none(transaction.status_changed_at),
    }


def balances_json(balances: api.Balances) -> dict[str, int]:
    return {
        "posted": balances.posted_minor,
        "pending_debits": balances.pending_debits_minor,
        "pending_credits": balances.pending_credits_minor,
        "available": balances.available_minor,
    }

"""Request and response JSON schemas of the payments HTTP endpoints (API.md "Payments").

Kept apart from the handlers so the contract shapes can be read and reviewed on their own.
"""

from __future__ import annotations

from typing import Any

from app.payments import webhook_endpoints
from app.payments.config import PROVIDERS

MAX_AMOUNT_MINOR = 2**63 - 1
_AMOUNT: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT_MINOR}
_CURRENCY: dict[str, Any] = {"type": "string", "pattern": "^[A-Z]{3}$"}
_ID: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 64}
_TOKEN: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 128,
    "pattern": "^[A-Za-z0-9_-]+$",
}

NEW_PAYMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "amount_minor",
        "currency",
        "customer_id",
        "payment_method",
        "merchant_account_id",
        "capture",
    ],
    "properties": {
        "amount_minor": _AMOUNT,
        "currency": _CURRENCY,
        "customer_id": _ID,
        "payment_method": {
            "type": "object",
            "additionalProperties": False,
            "required": ["token"],
            "properties": {
                # A named provider pins the payment there; "auto" (or none) lets the
                # routing rules choose.
                "provider": {"type": "string", "enum": [*PROVIDERS, "auto"]},
                "token": _TOKEN,
            },
        },
        "merchant_account_id": _ID,
        "capture": {"type": "string", "enum": ["automatic", "manual"]},
    },
}
CAPTURE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"amount_minor": _AMOUNT},
}
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {}}
REFUND_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["amount_minor"],
    "properties": {"amount_minor": _AMOUNT},
}
PAYOUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["account_id", "amount_minor", "currency", "destination"],
    "properties": {
        "account_id": _ID,
        "amount_minor": _AMOUNT,
        "currency": _CURRENCY,
        "destination": {
            "type": "object",
            "additionalProperties": False,
            "required": ["provider", "bank_token"],
            "properties": {
                "provider": {"type": "string", "enum": list(PROVIDERS)},
                "bank_token": _TOKEN,
            },
        },
    },
}
WEBHOOK_ENDPOINT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["url", "event_types"],
    "properties": {
        "url": {"type": "string", "minLength": 8, "maxLength": 2048, "format": "uri"},
        "event_types": {
            "type": "array",
            "minItems": 1,
            "maxItems": 20,
            "items": {"type": "string", "enum": sorted(webhook_endpoints.KNOWN_EVENT_TYPES)},
        },
        "description": {"type": "string", "maxLength": 500},
    },
}
WEBHOOK_ENDPOINT_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "url", "event_types", "enabled"],
    "properties": {
        "id": {"type": "string"},
        "url": {"type": "string"},
        "event_types": {"type": "array", "items": {"type": "string"}},
        "description": {"type": ["string", "null"]},
        "enabled": {"type": "boolean"},
        "secret": {"type": "string", "description": "whsec_..., shown once"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}
STEP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "status", "attempts"],
    "properties": {
        "name": {"type": "string"},
        "status": {
            "type": "string",
            "enum": ["started", "succeeded", "failed", "compensated", "skipped"],
        },
        "attempts": {"type": "integer"},
        "provider": {"type": ["string", "null"]},
        "provider_reference": {"type": ["string", "null"]},
        "amount_minor": {"type": ["integer", "null"]},
        "subject_id": {"type": ["string", "null"]},
        "detail": {"type": "object"},
        "started_at": {"type": "string", "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
PAYMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "status",
        "amount_minor",
        "captured_minor",
        "refunded_minor",
        "currency",
        "ledger_transaction_ids",
        "steps",
    ],
    "properties": {
        "id": {"type": "string"},
        "status": {
            "type": "string",
            "enum": [
                "pending",
                "pending_review",
                "authorized",
                "captured",
                "partially_refunded",
                "refunded",
                "voided",
                "declined",
                "failed",
            ],
        },
        "amount_minor": {"type": "integer"},
        "captured_minor": {"type": "integer"},
        "refunded_minor": {"type": "integer"},
        "currency": {"type": "string"},
        "customer_id": {"type": "string"},
        "merchant_account_id": {"type": "string"},
        "capture": {"type": "string", "enum": ["automatic", "manual"]},
        "provider": {"type": ["string", "null"]},
        "provider_reference": {"type": ["string", "null"]},
        "route_rule": {"type": ["string", "null"]},
        "ledger_transaction_ids": {"type": "array", "items": {"type": "string"}},
        "steps": {"type": "array", "items": STEP_SCHEMA},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}
REFUND_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "payment_id", "amount_minor", "status"],
    "properties": {
        "id": {"type": "string"},
        "payment_id": {"type": "string"},
        "amount_minor": {"type": "integer"},
        "status": {"type": "string", "enum": ["pending", "succeeded", "failed"]},
        "ledger_transaction_id": {"type": ["string", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
    },
}
PAYOUT_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "status",
        "account_id",
        "amount_minor",
        "currency",
        "ledger_transaction_ids",
        "steps",
    ],
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "paid", "failed"]},
        "account_id": {"type": "string"},
        "amount_minor": {"type": "integer"},
        "currency": {"type": "string"},
        "provider": {"type": "string"},
        "provider_reference": {"type": ["string", "null"]},
        "ledger_transaction_ids": {"type": "array", "items": {"type": "string"}},
        "steps": {"type": "array", "items": STEP_SCHEMA},
        "created_at": {"type": "string", "format": "date-time"},
    },
}

"""List pages (API.md "Lists"): `?limit=` and an opaque `?cursor=` we issued."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app.platform.errors import ValidationError

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_CURSOR_LENGTH = 512
MAX_CURSOR_ID_LENGTH = 64


# The query parameters every list takes (API.md "Lists"), for its OpenAPI operation.
PAGE_PARAMETERS: tuple[dict[str, Any], ...] = (
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
    },
    {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
)


def page_schema(item_schema: Mapping[str, Any]) -> dict[str, Any]:
    """The response schema of one list page: its items and the next page's cursor."""
    return {
        "type": "object",
        "required": ["data", "next_cursor"],
        "properties": {
            "data": {"type": "array", "items": item_schema},
            "next_cursor": {"type": ["string", "null"]},
        },
    }


def page_limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_PAGE_SIZE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise ValidationError(f"limit must be an integer from 1 to {MAX_PAGE_SIZE}")
    return int(raw)


def encode_cursor(position: Mapping[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(query: Mapping[str, str]) -> dict[str, Any] | None:
    raw = query.get("cursor")
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_CURSOR_LENGTH:
        raise ValidationError("cursor is too long")
    try:
        padded = raw + "=" * (-len(raw) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError):
        raise ValidationError("cursor is not one we issued") from None
    if not isinstance(value, dict):
        raise ValidationError("cursor is not one we issued")
    return value


def encode_time_cursor(at: datetime, item_id: str) -> str:
    """The cursor of a list kept in (created time, id) order.

    Microsecond ISO time, so the keyset position round-trips exactly.
    """
    return encode_cursor({"at": at.isoformat(), "id": item_id})


def decode_time_cursor(query: Mapping[str, str]) -> tuple[datetime, str] | None:
    """The (aware time, id) position a cursor from `encode_time_cursor` names, or None."""
    cursor = decode_cursor(query)
    if cursor is None:
        return None
    at, item_id = cursor.get("at"), cursor.get("id")
    if (
        not isinstance(at, str)
        or not isinstance(item_id, str)
        or len(item_id) > MAX_CURSOR_ID_LENGTH
    ):
        raise ValidationError("cursor is not one we issued")
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        raise ValidationError("cursor is not one we issued") from None
    if moment.tzinfo is None:
        raise ValidationError("cursor is not one we issued")
    return moment, item_id

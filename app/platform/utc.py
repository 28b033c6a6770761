"""UTC times as text: the one place a datetime becomes an RFC 3339 string ending in `Z`.

API.md's times are RFC 3339 UTC. Naive datetimes are refused (STYLE: aware UTC only),
since `astimezone` would silently read them as the host's local time.
"""

from __future__ import annotations

from datetime import UTC, datetime

from app.platform.errors import InvariantViolation


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvariantViolation("aware_datetime", "a naive datetime cannot be shown as UTC")
    return moment.astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    """`2026-12-01T13:16:52.123456Z`, or `...:52Z` when there are no microseconds."""
    return _aware(moment).isoformat().replace("+00:00", "Z")


def rfc3339_fixed(moment: datetime) -> str:
    """Always six fractional digits, for text that is hashed or compared as a string."""
    return _aware(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339_or_none(moment: datetime | None) -> str | None:
    """`rfc3339`, passing an absent time through as None (JSON null)."""
    return rfc3339(moment) if moment is not None else None

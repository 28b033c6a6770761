"""The (time, id) keyset cursor that the risk review and reconciliation exception lists share."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.platform import web
from app.platform.errors import ValidationError


def test_time_cursor_round_trips_to_the_microsecond_when_decoded() -> None:
    at = datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=UTC)
    cursor = web.encode_time_cursor(at, "rev_01")
    assert web.decode_time_cursor({"cursor": cursor}) == (at, "rev_01")


def test_time_cursor_is_absent_when_the_query_has_none() -> None:
    assert web.decode_time_cursor({}) is None
    assert web.decode_time_cursor({"cursor": ""}) is None


@pytest.mark.parametrize(
    "position",
    [
        {"at": "2026-03-01T12:30:05", "id": "rev_01"},  # naive time
        {"at": "yesterday", "id": "rev_01"},
        {"at": "2026-03-01T12:30:05+00:00", "id": 7},
        {"at": "2026-03-01T12:30:05+00:00", "id": "x" * 65},
        {"id": "rev_01"},
    ],
)
def test_time_cursor_is_refused_when_it_is_not_one_we_issued(position: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="cursor is not one we issued"):
        web.decode_time_cursor({"cursor": web.encode_cursor(position)})

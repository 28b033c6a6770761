"""app/platform/utc.py: the one place a datetime becomes RFC 3339 text with a Z."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.platform.errors import InvariantViolation
from app.platform.utc import rfc3339, rfc3339_fixed, rfc3339_or_none

MOMENT = datetime(2026, 12, 1, 13, 16, 52, 500, tzinfo=UTC)


def test_rfc3339_ends_in_z_and_converts_to_utc_when_given_another_offset() -> None:
    berlin = MOMENT.astimezone(timezone(timedelta(hours=1)))
    assert rfc3339(berlin) == "2026-12-01T13:16:52.000500Z"
    assert rfc3339(MOMENT.replace(microsecond=0)) == "2026-12-01T13:16:52Z"


def test_fixed_form_always_has_six_fractional_digits_when_microseconds_are_zero() -> None:
    assert rfc3339_fixed(MOMENT.replace(microsecond=0)) == "2026-12-01T13:16:52.000000Z"


def test_absent_time_stays_none_when_optional() -> None:
    assert rfc3339_or_none(None) is None
    assert rfc3339_or_none(MOMENT) == rfc3339(MOMENT)


@pytest.mark.parametrize("render", [rfc3339, rfc3339_fixed])
def test_naive_datetime_is_refused_when_rendered(render: object) -> None:
    with pytest.raises(InvariantViolation):
        render(datetime(2026, 12, 1, 13, 0))  # type: ignore[operator]  # noqa: DTZ001

"""The Python side of the risk contract: KYC tier, customer age, and the strict reading of
OPA's answer (anything but the documented shape is no answer)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.platform.settings import Settings, SettingsError
from app.risk.domain import WindowCounter, age_days, kyc_tier, policy_input, read_answer


@pytest.mark.parametrize(
    ("status", "dob", "tier"),
    [
        ("verified", True, "full"),
        ("verified", False, "basic"),
        ("pending", True, "none"),
        ("rejected", True, "none"),
    ],
)
def test_kyc_tier_follows_status_and_date_of_birth_when_derived(
    status: str, dob: bool, tier: str
) -> None:
    assert kyc_tier(status, dob) == tier


def test_age_is_whole_days_and_never_negative_when_clocks_skew() -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert age_days(now - timedelta(days=30, hours=1), now) == 30
    assert age_days(now - timedelta(hours=23), now) == 0
    assert age_days(now + timedelta(minutes=5), now) == 0


def test_policy_input_carries_every_window_when_built() -> None:
    document = policy_input(
        payment_id="pay_1",
        amount_minor=500,
        currency="EUR",
        customer_id="cus_1",
        country="DE",
        tier="full",
        customer_age_days=3,
        velocity={"1h": WindowCounter(2, 300), "24h": WindowCounter(4, 900)},
    )
    assert document["velocity"] == {
        "1h": {"count": 2, "amount_minor": 300},
        "24h": {"count": 4, "amount_minor": 900},
    }
    assert document["customer"]["kyc_tier"] == "full"


@pytest.mark.parametrize(
    "result",
    [
        {"outcome": "approve", "reasons": []},
        {"outcome": "review", "reasons": ["velocity_count_1h", "velocity_count_1h"]},
        {"outcome": "decline", "reasons": ["kyc_not_verified", "country_blocked"]},
    ],
)
def test_answer_is_read_when_it_has_the_documented_shape(result: dict[str, Any]) -> None:
    answer = read_answer({"result": result, "decision_id": "d"})
    assert answer is not None
    assert answer.outcome == result["outcome"]
    assert answer.reasons == tuple(sorted(set(result["reasons"])))


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"result": None},
        {"result": "approve"},
        {"result": {"outcome": "approve"}},
        {"result": {"outcome": "APPROVE", "reasons": []}},
        {"result": {"outcome": "approve", "reasons": ["x"]}},
        {"result": {"outcome": "review", "reasons": []}},
        {"result": {"outcome": "review", "reasons": "velocity"}},
        {"result": {"outcome": "review", "reasons": ["Has Spaces"]}},
        {"result": {"outcome": "review", "reasons": [1]}},
        {"result": {"outcome": "review", "reasons": ["r"] * 33}},
        {"result": {"outcome": "approve", "reasons": [], "also": True}},
    ],
)
def test_answer_is_refused_when_it_is_not_the_documented_shape(document: dict[str, Any]) -> None:
    assert read_answer(document) is None


def test_risk_timeout_is_a_bounded_setting_when_read_from_the_environment() -> None:
    assert Settings.from_env({"MONEYPATH_ENV": "dev"}).risk_timeout_ms == 250
    assert (
        Settings.from_env({"MONEYPATH_ENV": "dev", "RISK_TIMEOUT_MS": "80"}).risk_timeout_ms == 80
    )
    with pytest.raises(SettingsError, match="RISK_TIMEOUT_MS"):
        Settings.from_env({"MONEYPATH_ENV": "dev", "RISK_TIMEOUT_MS": "0"})

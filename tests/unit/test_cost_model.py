"""The cost model: whole millionths, provider fees, and a file that overrides defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.platform.cost_model import CostModel, CostModelError, ProviderFee


def test_provider_fee_is_fixed_plus_basis_points_in_micros_when_captured() -> None:
    model = CostModel(provider_fees={"sim": ProviderFee(fixed_micros=300_000, basis_points=290)})
    # 10.00 USD at 2.9 % + 0.30 = 0.59 USD = 590,000 micros.
    assert model.provider_fee_micros("sim", 1000) == 590_000
    assert model.provider_fee_micros("sim", 1000, exponent=0) == 300_000 + 29_000_000
    assert model.provider_fee_micros("unknown", 1000) == 0


def test_file_overrides_defaults_and_spreads_fixed_cost_per_second_when_given(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cost.json"
    path.write_text(
        json.dumps(
            {
                "fixed_monthly_micros": {"compute": 2_592_000_000},
                "ledger_write_micros": 7,
                "provider_fees": {"sim": {"fixed_micros": 1, "basis_points": 100}},
            }
        )
    )
    model = CostModel.from_file(path)
    assert model.ledger_write_micros == 7
    assert model.authorization_micros == CostModel().authorization_micros
    assert model.fixed_micros_per_second() == 1000.0
    assert model.provider_fees["sim"] == ProviderFee(1, 100)


@pytest.mark.parametrize(
    "bad",
    [
        {"ledger_write_micros": 1.5},
        {"ledger_write_micros": -1},
        {"provider_fees": {"sim": {"basis_points": "2"}}},
        [],
    ],
)
def test_file_is_refused_when_a_cost_is_not_a_whole_number(tmp_path: Path, bad: object) -> None:
    path = tmp_path / "cost.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(CostModelError):
        CostModel.from_file(path)

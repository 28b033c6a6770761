"""The cost model behind `moneypath:cost_per_transaction_micros`: what running costs.

Costs are integers in millionths ("micros") of the model's currency, so that a
sub-cent cost per request adds up exactly. The model has three parts:
- fixed infrastructure per month (compute, database, observability...), spread per second;
- a variable cost per authorized request and per ledger write (CPU, I/O, storage);
- each provider's fee on a captured payment: a fixed part plus basis points of the amount.

The defaults are placeholders of the right order; an operator sets real figures in a JSON
file named by COST_MODEL_FILE (see `CostModel.from_file`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

SECONDS_PER_MONTH = 30 * 24 * 3600
MICROS_EXPONENT = 6


class CostModelError(ValueError):
    """The cost model file is unreadable or holds a value that is not a whole number >= 0."""


@dataclass(frozen=True)
class ProviderFee:
    fixed_micros: int = 0
    basis_points: int = 0


def _defaults() -> Mapping[str, int]:
    return MappingProxyType({"compute": 150_000_000, "database": 120_000_000})


@dataclass(frozen=True)
class CostModel:
    currency: str = "USD"
    fixed_monthly_micros: Mapping[str, int] = field(default_factory=_defaults)
    authorization_micros: int = 20
    ledger_write_micros: int = 60
    provider_fees: Mapping[str, ProviderFee] = field(default_factory=dict)

    def fixed_micros_per_second(self) -> float:
        return sum(self.fixed_monthly_micros.values()) / SECONDS_PER_MONTH

    def provider_fee_micros(self, provider: str, amount_minor: int, exponent: int = 2) -> int:
        """The provider's fee on `amount_minor` (a currency with `exponent` decimals)."""
        fee = self.provider_fees.get(provider, ProviderFee())
        if not 0 <= exponent <= MICROS_EXPONENT:
            raise CostModelError(f"a currency exponent of {exponent} is not supported")
        scale: int = 10 ** (MICROS_EXPONENT - exponent)
        amount_micros = amount_minor * scale
        return fee.fixed_micros + amount_micros * fee.basis_points // 10_000

    @classmethod
    def from_file(cls, path: Path) -> CostModel:
        """Read `{"currency", "fixed_monthly_micros": {...}, "authorization_micros",
        "ledger_write_micros", "provider_fees": {name: {"fixed_micros", "basis_points"}}}`;
        every field is optional. Raises CostModelError."""
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise CostModelError(f"cannot read cost model {path}: {error}") from None
        if not isinstance(document, dict):
            raise CostModelError(f"{path} must hold a JSON object")
        defaults = cls()
        fees = {
            name: ProviderFee(
                fixed_micros=_whole(fee, "fixed_micros"), basis_points=_whole(fee, "basis_points")
            )
            for name, fee in _mapping(document, "provider_fees").items()
        }
        fixed = _mapping(document, "fixed_monthly_micros")
        return cls(
            currency=str(document.get("currency", defaults.currency)),
            fixed_monthly_micros={name: _whole(fixed, name) for name in fixed}
            if fixed
            else defaults.fixed_monthly_micros,
            authorization_micros=_whole(
                document, "authorization_micros", defaults.authorization_micros
            ),
            ledger_write_micros=_whole(
                document, "ledger_write_micros", defaults.ledger_write_micros
            ),
            provider_fees=fees,
        )


def _mapping(document: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = document.get(name, {})
    if not isinstance(value, dict):
        raise CostModelError(f"{name} must be an object")
    return value


def _whole(document: Mapping[str, Any], name: str, default: int = 0) -> int:
    value = document.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CostModelError(f"{name}={value!r} must be a whole number >= 0")
    return value

"""The payments domain's tunables, read once from the environment.

Routing rules live here (not in code) so an operator can move a currency or a slice of
traffic to another provider by changing the environment and restarting:

- `PAYMENTS_DEFAULT_PROVIDER=acme`
- `PAYMENTS_CURRENCY_ROUTES=EUR=globex,GBP=acme` (currency -> provider)
- `PAYMENTS_SPLIT=globex:10` (percent of the remaining traffic sent to that provider)
- `PAYMENTS_FALLBACK=true` (use the other provider while the chosen one's breaker is open
  before any call was made)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from app.platform.settings import SettingsError

PROVIDERS = ("acme", "globex")

# The Standard Webhooks example schedule (seconds after the previous attempt), stretched
# to 10 attempts with its last step repeated. Attempt 1 is immediate.
STANDARD_SCHEDULE_S = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0, 36000.0, 36000.0)


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} must lie in [{low}, {high}]")
    return value


def _provider(name: str, value: str) -> str:
    if value not in PROVIDERS:
        raise SettingsError(f"{name}: unknown provider {value!r} (known: {', '.join(PROVIDERS)})")
    return value


@dataclass(frozen=True, slots=True)
class Routing:
    default_provider: str = "acme"
    by_currency: Mapping[str, str] = field(default_factory=dict)
    split_provider: str | None = None
    split_percent: int = 0
    fallback: bool = True


@dataclass(frozen=True, slots=True)
class PaymentsConfig:
    routing: Routing
    # A started step untouched this long is presumed abandoned (process died mid-call).
    recovery_after_s: float
    webhook_schedule_scale: float
    webhook_timeout_s: float
    webhook_max_attempts: int
    allow_insecure_webhook_urls: bool
    production: bool
    # Test-only hook: pause right after the provider answered and before the ledger
    # posting, so a test can kill -9 the process there. Refused outside MONEYPATH_ENV=test.
    pause_after_provider: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PaymentsConfig:
        source = os.environ if env is None else env
        environment = source.get("MONEYPATH_ENV", "dev")
        routes: dict[str, str] = {}
        for item in filter(None, source.get("PAYMENTS_CURRENCY_ROUTES", "").split(",")):
            currency, _, provider = item.partition("=")
            if len(currency) != 3 or not currency.isupper():
                raise SettingsError(f"PAYMENTS_CURRENCY_ROUTES: bad currency in {item!r}")
            routes[currency] = _provider("PAYMENTS_CURRENCY_ROUTES", provider)
        split_provider: str | None = None
        split_percent = 0
        split = source.get("PAYMENTS_SPLIT", "")
        if split:
            provider, _, percent = split.partition(":")
            split_provider = _provider("PAYMENTS_SPLIT", provider)
            if not percent.isdigit() or not 0 <= int(percent) <= 100:
                raise SettingsError(f"PAYMENTS_SPLIT={split!r}: percent must be 0..100")
            split_percent = int(percent)
        fallback = source.get("PAYMENTS_FALLBACK", "true").lower() not in {"0", "false", "no"}
        pause = source.get("PAYMENTS_TEST_PAUSE_AFTER_PROVIDER") or None
        if pause is not None and environment != "test":
            raise SettingsError("PAYMENTS_TEST_PAUSE_AFTER_PROVIDER is for MONEYPATH_ENV=test")
        insecure_default = environment != "production"
        insecure = source.get("ALLOW_INSECURE_WEBHOOK_URLS", "")
        return cls(
            routing=Routing(
                default_provider=_provider(
                    "PAYMENTS_DEFAULT_PROVIDER", source.get("PAYMENTS_DEFAULT_PROVIDER", "acme")
                ),
                by_currency=routes,
                split_provider=split_provider,
                split_percent=split_percent,
                fallback=fallback,
            ),
            recovery_after_s=_float(source, "PAYMENTS_RECOVERY_AFTER_S", 30.0, 0.0, 3600.0),
            webhook_schedule_scale=_float(source, "WEBHOOK_SCHEDULE_SCALE", 1.0, 1e-6, 1.0),
            webhook_timeout_s=_float(source, "WEBHOOK_TIMEOUT_S", 15.0, 0.1, 15.0),
            webhook_max_attempts=int(_float(source, "WEBHOOK_MAX_ATTEMPTS", 10, 1, 10)),
            allow_insecure_webhook_urls=(
                insecure_default
                if insecure == ""
                else insecure.lower() in {"1", "true", "yes", "on"}
            ),
            production=environment == "production",
            pause_after_provider=pause,
        )

"""Provider settings (addresses, timeouts, retry and breaker limits) and Vault secrets.

Addresses and limits come from the environment, read once at start-up. API keys and
webhook secrets come from Vault (`kv/moneypath/providers/<name>`); the dev bootstrap
writes them, and the simulator is started with the same values.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from app.platform.settings import SettingsError
from app.providers.domain import PROVIDERS, ProviderName, ProviderOperation

SECRET_PATH = "moneypath/providers/{provider}"  # noqa: S105 - a Vault path
DEFAULT_SIM_URL = "http://127.0.0.1:8090"
# Per-operation default timeouts: an authorize may wait on the card network; a status
# lookup should be quick.
DEFAULT_TIMEOUTS_MS: dict[ProviderOperation, int] = {
    ProviderOperation.AUTHORIZE: 5000,
    ProviderOperation.CAPTURE: 5000,
    ProviderOperation.VOID: 3000,
    ProviderOperation.REFUND: 5000,
    ProviderOperation.PAYOUT: 8000,
    ProviderOperation.LOOKUP: 2000,
    ProviderOperation.STATUS: 2000,
    ProviderOperation.SETTLEMENT: 15000,
}


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} must lie in [{low}, {high}]")
    return value


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name) or default
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise SettingsError(f"{name}={value!r} is not an http(s) URL")
    return value.rstrip("/")


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """Every tunable of the adapters. Build it with `ProviderSettings.from_env()`."""

    base_urls: Mapping[ProviderName, str]
    timeouts_ms: Mapping[ProviderOperation, int]
    retry_attempts: int = 3
    retry_backoff_base_ms: int = 100
    retry_backoff_cap_ms: int = 2000
    retry_total_ms: int = 20_000
    breaker_failure_threshold: int = 5
    breaker_reset_ms: int = 30_000
    max_connections: int = 50
    webhook_tolerance_s: int = 300

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProviderSettings:
        """Read PROVIDER_* variables. Raises SettingsError naming the bad variable.

        PROVIDER_SIM_URL sets where both simulated providers live (`<url>/acme`,
        `<url>/globex`); PROVIDER_ACME_URL / PROVIDER_GLOBEX_URL override one each.
        PROVIDER_<OPERATION>_TIMEOUT_MS sets one operation's timeout.
        """
        source = os.environ if env is None else env
        sim = _url(source, "PROVIDER_SIM_URL", DEFAULT_SIM_URL)
        base_urls = {
            name: _url(source, f"PROVIDER_{name.upper()}_URL", f"{sim}/{name}")
            for name in PROVIDERS
        }
        timeouts = {
            operation: _integer(
                source, f"PROVIDER_{operation.name}_TIMEOUT_MS", default, 50, 120_000
            )
            for operation, default in DEFAULT_TIMEOUTS_MS.items()
        }
        return cls(
            base_urls=base_urls,
            timeouts_ms=timeouts,
            retry_attempts=_integer(source, "PROVIDER_RETRY_ATTEMPTS", 3, 1, 10),
            retry_backoff_base_ms=_integer(source, "PROVIDER_RETRY_BASE_MS", 100, 1, 10_000),
            retry_backoff_cap_ms=_integer(source, "PROVIDER_RETRY_CAP_MS", 2000, 1, 60_000),
            retry_total_ms=_integer(source, "PROVIDER_RETRY_TOTAL_MS", 20_000, 100, 300_000),
            breaker_failure_threshold=_integer(source, "PROVIDER_BREAKER_THRESHOLD", 5, 1, 1000),
            breaker_reset_ms=_integer(source, "PROVIDER_BREAKER_RESET_MS", 30_000, 10, 3_600_000),
            max_connections=_integer(source, "PROVIDER_MAX_CONNECTIONS", 50, 1, 1000),
            webhook_tolerance_s=_integer(source, "PROVIDER_WEBHOOK_TOLERANCE_S", 300, 1, 3600),
        )


@dataclass(frozen=True, slots=True)
class ProviderSecrets:
    api_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)  # "whsec_" + base64 of the HMAC key
    # The secret being rotated out: webhooks signed with it still verify until it is removed.
    previous_webhook_secret: str | None = field(default=None, repr=False)

    @property
    def webhook_secrets(self) -> tuple[str, ...]:
        if self.previous_webhook_secret:
            return (self.webhook_secret, self.previous_webhook_secret)
        return (self.webhook_secret,)


class SecretStore(Protocol):
    """The part of app.platform.vault.Vault we use (kept narrow for the bootstrap)."""

    def read_secret(self, path: str) -> dict[str, object] | None: ...

    def write_secret(self, path: str, data: dict[str, object]) -> None: ...


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def ensure_provider_secrets(vault: SecretStore) -> dict[ProviderName, ProviderSecrets]:
    """Create each provider's API key and webhook secret in Vault if missing; return all.

    Used by the dev bootstrap only: in production the provider issues both and an operator
    writes them to Vault.
    """
    for name in PROVIDERS:
        path = SECRET_PATH.format(provider=name)
        current = vault.read_secret(path)
        if current is None or "api_key" not in current or "webhook_secret" not in current:
            vault.write_secret(
                path,
                {
                    "api_key": f"{name}_sk_{secrets.token_urlsafe(24)}",
                    "webhook_secret": new_webhook_secret(),
                },
            )
    return read_provider_secrets(vault)


def read_provider_secrets(vault: SecretStore) -> dict[ProviderName, ProviderSecrets]:
    """Each provider's secrets from Vault. Raises SettingsError when one is missing."""
    found: dict[ProviderName, ProviderSecrets] = {}
    for name in PROVIDERS:
        path = SECRET_PATH.format(provider=name)
        data = vault.read_secret(path)
        if data is None or "api_key" not in data or "webhook_secret" not in data:
            raise SettingsError(f"Vault has no kv/{path}: run `moneypath bootstrap` first")
        previous = data.get("previous_webhook_secret")
        found[name] = ProviderSecrets(
            api_key=str(data["api_key"]),
            webhook_secret=str(data["webhook_secret"]),
            previous_webhook_secret=str(previous) if previous else None,
        )
    return found

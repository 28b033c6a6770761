"""The simulator's settings, from SIM_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROVIDERS = ("acme", "globex")


class SimConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class SimConfig:
    port: int
    api_keys: Mapping[str, str] = field(repr=False)
    webhook_secrets: Mapping[str, str] = field(repr=False)
    webhook_url: str | None  # the API's base URL; webhooks go to {url}/v1/webhooks/providers/{p}
    state_file: Path | None
    hold_s: float  # how long a "timeout" or "lost response" keeps the connection open
    max_records: int
    webhook_attempts: int
    webhook_timeout_s: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SimConfig:
        source = os.environ if env is None else env
        keys: dict[str, str] = {}
        secrets: dict[str, str] = {}
        for name in PROVIDERS:
            key = source.get(f"SIM_{name.upper()}_API_KEY")
            secret = source.get(f"SIM_{name.upper()}_WEBHOOK_SECRET")
            if not key or not secret or not secret.startswith("whsec_"):
                raise SimConfigError(
                    f"set SIM_{name.upper()}_API_KEY and SIM_{name.upper()}_WEBHOOK_SECRET "
                    "(whsec_...): the dev stack passes the values it wrote to Vault"
                )
            keys[name], secrets[name] = key, secret
        state = source.get("SIM_STATE_FILE")
        try:
            return cls(
                port=int(source.get("SIM_PORT", "8090")),
                api_keys=keys,
                webhook_secrets=secrets,
                webhook_url=(source.get("SIM_WEBHOOK_URL") or "").rstrip("/") or None,
                state_file=Path(state) if state else None,
                hold_s=min(max(float(source.get("SIM_HOLD_S", "30")), 0.1), 300.0),
                max_records=min(max(int(source.get("SIM_MAX_RECORDS", "200000")), 100), 5_000_000),
                webhook_attempts=min(max(int(source.get("SIM_WEBHOOK_ATTEMPTS", "5")), 1), 20),
                webhook_timeout_s=min(
                    max(float(source.get("SIM_WEBHOOK_TIMEOUT_S", "3")), 0.1), 30.0
                ),
            )
        except ValueError as error:
            raise SimConfigError(f"bad SIM_* number: {error}") from None

"""Typed settings, read once from the environment and validated at start-up.

Only addresses, ports, limits and the Vault login come from the environment. Secrets
(database credentials in production, signing keys, webhook secrets) come from Vault.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable and the fix."""


# ---- the parsers every service's settings use (the API's here, evidence/config.py) ------

_INTEGER = re.compile(r"-?[0-9]+")


def integer_setting(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer in [low, high]: ASCII digits with an optional minus, nothing else."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not _INTEGER.fullmatch(raw.strip()):
        raise SettingsError(f"{name}={raw!r} is not an integer")
    value = int(raw)
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} must lie in [{low}, {high}]")
    return value


def boolean_setting(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use true or false)")


def url_setting(env: Mapping[str, str], name: str, default: str) -> str:
    """An http(s) URL with a host, without its trailing slash."""
    value = env.get(name) or default
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise SettingsError(f"{name}={value!r} is not an http(s) URL")
    return value.rstrip("/")


def ip_setting(env: Mapping[str, str], name: str, default: str) -> str:
    """An IP address literal to bind to (a listener's address, never a host name)."""
    value = env.get(name) or default
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not an IP address") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_in_production(
    environment: str, name: str, url: str, *, allow_plain_loopback: bool = False
) -> str:
    """Refuse a plain-http `url` in production, unless it is loopback and that is allowed.

    Vault hands out every secret and the issuer's JWKS decides which tokens are genuine
    (DESIGN.md, security profile), so in production both are reached over TLS. A Vault
    agent or sidecar on the same host may speak plain http on a loopback address, but only
    when ALLOW_PLAIN_HTTP_LOOPBACK=true says so: otherwise a forgotten VAULT_ADDR or
    PUBLIC_BASE_URL would start production on the dev defaults (http://127.0.0.1:...).
    """
    parts = urlsplit(url)
    if environment != "production" or parts.scheme == "https":
        return url
    if not _is_loopback(parts.hostname or ""):
        raise SettingsError(f"{name}={url!r} must be an https URL in production")
    if not allow_plain_loopback:
        raise SettingsError(
            f"{name}={url!r} must be an https URL in production; plain http on a loopback"
            " address (a Vault agent or sidecar on this host) needs"
            " ALLOW_PLAIN_HTTP_LOOPBACK=true"
        )
    return url


@dataclass(frozen=True, slots=True)
class VaultLogin:
    """How the app logs in to Vault: a token (dev only) or an AppRole."""

    token: str | None = field(default=None, repr=False)
    role_id: str | None = field(default=None, repr=False)
    secret_id: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every tunable of the API process. Build it with `Settings.from_env()`."""

    environment: str
    database_url: str | None
    vault_addr: str
    vault_login: VaultLogin
    opa_url: str
    public_base_url: str
    evidence_url: str
    request_body_limit_bytes: int
    outbound_timeout_ms: int
    opa_timeout_ms: int
    # The payment risk decision's time box; past it the payment goes to review.
    risk_timeout_ms: int
    idempotency_ttl_s: int
    ledger_checkpoint_interval_s: int
    idempotency_stale_claim_s: int
    db_pool_size: int
    allow_insecure_webhook_urls: bool
    data_dir: Path
    log_level: str
    # A JSON cost model (app/platform/cost_model.py); None uses the placeholder defaults.
    cost_model_file: Path | None = None
    # Production only: whether VAULT_ADDR and the token issuer may be plain http on loopback.
    allow_plain_http_loopback: bool = False
    # Where `moneypath worker` serves its own /metrics (0: not at all).
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = 0

    @property
    def is_dev(self) -> bool:
        return self.environment in {"dev", "test"}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the environment. Raises SettingsError naming the bad variable."""
        source = os.environ if env is None else env
        # Production unless told otherwise: a forgotten variable must not fall back to the
        # dev root token and insecure webhooks. `make run`, `moneypath up` and the tests
        # say dev or test explicitly.
        environment = source.get("MONEYPATH_ENV", "production")
        if environment not in {"dev", "test", "production"}:
            raise SettingsError(
                f"MONEYPATH_ENV={environment!r} must be one of dev, test, production"
            )
        login = VaultLogin(
            token=source.get("VAULT_TOKEN") or None,
            role_id=source.get("VAULT_ROLE_ID") or None,
            secret_id=source.get("VAULT_SECRET_ID") or None,
        )
        if login.token is None and (login.role_id is None or login.secret_id is None):
            if environment == "production":
                raise SettingsError(
                    "set VAULT_ROLE_ID and VAULT_SECRET_ID (AppRole) to log in to Vault"
                )
            login = VaultLogin(token="moneypath-dev-root")  # noqa: S106 - the dev server token
        if environment == "production" and login.token is not None:
            raise SettingsError("VAULT_TOKEN is for development only; use AppRole in production")
        database_url = source.get("DATABASE_URL") or None
        if database_url is not None and not database_url.startswith(("postgresql", "postgres")):
            raise SettingsError(f"DATABASE_URL must be a postgresql:// URL, got {database_url!r}")
        plain_loopback = boolean_setting(source, "ALLOW_PLAIN_HTTP_LOOPBACK", False)
        log_level = source.get("LOG_LEVEL", "info").lower()
        if log_level not in {"debug", "info", "warning", "error"}:
            raise SettingsError(f"LOG_LEVEL={log_level!r} must be debug, info, warning or error")
        return cls(
            environment=environment,
            database_url=database_url,
            vault_addr=tls_in_production(
                environment,
                "VAULT_ADDR",
                url_setting(source, "VAULT_ADDR", "http://127.0.0.1:8200"),
                allow_plain_loopback=plain_loopback,
            ),
            vault_login=login,
            opa_url=url_setting(source, "OPA_URL", "http://127.0.0.1:8181"),
            # The API's public base URL is also the issuer of its access tokens.
            public_base_url=tls_in_production(
                environment,
                "PUBLIC_BASE_URL",
                url_setting(source, "PUBLIC_BASE_URL", "http://127.0.0.1:8000"),
                allow_plain_loopback=plain_loopback,
            ),
            evidence_url=url_setting(source, "EVIDENCE_URL", "http://127.0.0.1:8081"),
            request_body_limit_bytes=integer_setting(
                source, "REQUEST_BODY_LIMIT_BYTES", 64 * 1024, 1024, 16 * 1024 * 1024
            ),
            outbound_timeout_ms=integer_setting(source, "OUTBOUND_TIMEOUT_MS", 2000, 50, 60_000),
            opa_timeout_ms=integer_setting(source, "OPA_TIMEOUT_MS", 500, 10, 10_000),
            risk_timeout_ms=integer_setting(source, "RISK_TIMEOUT_MS", 250, 10, 5000),
            idempotency_ttl_s=integer_setting(source, "IDEMPOTENCY_TTL_S", 86_400, 60, 30 * 86_400),
            # How often the worker anchors the ledger's chain head in the evidence log.
            ledger_checkpoint_interval_s=integer_setting(
                source, "LEDGER_CHECKPOINT_INTERVAL_S", 60, 1, 86_400
            ),
            idempotency_stale_claim_s=integer_setting(
                source, "IDEMPOTENCY_STALE_CLAIM_S", 60, 1, 3600
            ),
            db_pool_size=integer_setting(source, "DB_POOL_SIZE", 10, 1, 200),
            allow_insecure_webhook_urls=boolean_setting(
                source, "ALLOW_INSECURE_WEBHOOK_URLS", environment != "production"
            ),
            data_dir=Path(source.get("MONEYPATH_DATA_DIR", ".data")),
            log_level=log_level,
            cost_model_file=Path(source["COST_MODEL_FILE"])
            if source.get("COST_MODEL_FILE")
            else None,
            allow_plain_http_loopback=plain_loopback,
            worker_metrics_host=ip_setting(source, "WORKER_METRICS_HOST", "127.0.0.1"),
            # Served by default in production, so the worker's figures (dead letters,
            # provider calls) cannot silently go unwatched; a dev or test worker serves
            # them only when told a port, so parallel workers never fight over one.
            worker_metrics_port=integer_setting(
                source, "WORKER_METRICS_PORT", 9101 if environment == "production" else 0, 0, 65535
            ),
        )

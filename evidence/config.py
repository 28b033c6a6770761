"""The evidence service's settings: the platform's, plus what only this service tunes.

Addresses and limits come from the environment; the database URL and the checkpoint
signing key live in OpenBao.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from app.platform.settings import (
    Settings,
    SettingsError,
    integer_setting,
    tls_in_production,
    url_setting,
)

DATABASE_SECRET = "moneypath/evidence-database"  # noqa: S105 - a Vault path, not a secret
# The API database, reached with a role that may only call identity.key_is_active().
# The owner role's URL: migrations only (`evidence migrate`), never the running service.
MIGRATION_DATABASE_SECRET = "moneypath/evidence-migration-database"  # noqa: S105 - a Vault path
IDENTITY_DATABASE_SECRET = "moneypath/evidence-identity-database"  # noqa: S105 - a Vault path
SIGNING_KEY_NAME = "evidence-checkpoint"


@dataclass(frozen=True, slots=True)
class EvidenceSettings:
    """Build it with `EvidenceSettings.from_env()`; raises SettingsError naming the variable."""

    platform: Settings
    public_base_url: str
    issuer_url: str
    origin: str
    body_limit_bytes: int
    attachment_limit_bytes: int
    checkpoint_every_records: int
    checkpoint_interval_ms: int
    export_max_records: int
    signing_key_name: str

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer_url}/.well-known/jwks.json"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EvidenceSettings:
        source = os.environ if env is None else env
        platform = Settings.from_env(source)
        origin = source.get("EVIDENCE_LOG_ORIGIN") or "moneypath.dev/evidence"
        # The origin is the first line of every signed checkpoint; a newline would let
        # one note impersonate another.
        if not origin.isprintable() or len(origin) > 128:
            raise SettingsError("EVIDENCE_LOG_ORIGIN must be printable, at most 128 characters")
        return cls(
            platform=platform,
            public_base_url=url_setting(source, "EVIDENCE_PUBLIC_BASE_URL", platform.evidence_url),
            # The issuer's JWKS URL is derived from it (jwks_url), so TLS covers both.
            issuer_url=tls_in_production(
                platform.environment,
                "API_ISSUER_URL",
                url_setting(source, "API_ISSUER_URL", platform.public_base_url),
                allow_plain_loopback=platform.allow_plain_http_loopback,
            ),
            origin=origin,
            body_limit_bytes=integer_setting(
                source, "EVIDENCE_BODY_LIMIT_BYTES", 1024 * 1024, 64 * 1024, 16 * 1024 * 1024
            ),
            attachment_limit_bytes=integer_setting(
                source, "EVIDENCE_ATTACHMENT_LIMIT_BYTES", 512 * 1024, 1024, 8 * 1024 * 1024
            ),
            checkpoint_every_records=integer_setting(
                source, "EVIDENCE_CHECKPOINT_EVERY_RECORDS", 1000, 1, 1_000_000
            ),
            checkpoint_interval_ms=integer_setting(
                source, "EVIDENCE_CHECKPOINT_INTERVAL_MS", 1000, 50, 3_600_000
            ),
            export_max_records=integer_setting(
                source, "EVIDENCE_EXPORT_MAX_RECORDS", 10_000, 1, 1_000_000
            ),
            signing_key_name=source.get("EVIDENCE_SIGNING_KEY") or SIGNING_KEY_NAME,
        )

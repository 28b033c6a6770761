"""The evidence service's own database: where its URL lives and how it is migrated."""

from __future__ import annotations

from pathlib import Path

from app.platform import migrate
from app.platform.vault import DatabaseNotConfiguredError, Vault
from evidence.config import DATABASE_SECRET, IDENTITY_DATABASE_SECRET, MIGRATION_DATABASE_SECRET

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


__all__ = ["MIGRATIONS", "DatabaseNotConfiguredError", "database_url", "upgrade"]


def version_locations() -> list[Path]:
    # The platform branch brings platform.audit_log, idempotency_keys, seen_nonces and
    # refuse_change() into this database too; the pipeline writes to them.
    return [MIGRATIONS, migrate.APP_ROOT / "platform" / "migrations"]


def upgrade(database_url: str) -> None:
    """Bring the evidence database to every branch's head (advisory-locked, idempotent)."""
    migrate.upgrade(database_url, version_locations())


def database_url(vault: Vault) -> str:
    """Raises DatabaseNotConfiguredError."""
    return vault.database_url(DATABASE_SECRET)


def identity_database_url(vault: Vault) -> str:
    """Where the evidence service asks whether a client and key are still usable.

    Raises DatabaseNotConfiguredError."""
    return vault.database_url(IDENTITY_DATABASE_SECRET)


def migration_database_url(vault: Vault) -> str:
    """The owner role's URL, for `evidence migrate`; the service itself never holds it.

    Raises DatabaseNotConfiguredError."""
    return vault.database_url(MIGRATION_DATABASE_SECRET)

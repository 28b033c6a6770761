"""The evidence service's own database: where its URL lives and how it is migrated."""

from __future__ import annotations

from pathlib import Path

from app.platform import migrate
from app.platform.vault import Vault
from evidence.config import DATABASE_SECRET, IDENTITY_DATABASE_SECRET, MIGRATION_DATABASE_SECRET

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class DatabaseNotConfiguredError(RuntimeError):
    """Vault holds no evidence database URL; `moneypath bootstrap` (or `up`) writes it."""


def version_locations() -> list[Path]:
    # The platform branch brings platform.audit_log, idempotency_keys, seen_nonces and
    # refuse_change() into this database too; the pipeline writes to them.
    return [MIGRATIONS, migrate.APP_ROOT / "platform" / "migrations"]


def upgrade(database_url: str) -> None:
    """Bring the evidence database to every branch's head (advisory-locked, idempotent)."""
    migrate.upgrade(database_url, version_locations())


def database_url(vault: Vault) -> str:
    secret = vault.read_secret(DATABASE_SECRET)
    if secret is None or not secret.get("url"):
        raise DatabaseNotConfiguredError(
            f"Vault has no kv/{DATABASE_SECRET}: run `moneypath up` or the bootstrap first"
        )
    return str(secret["url"])


def identity_database_url(vault: Vault) -> str:
    """Where the evidence service asks whether a client and key are still usable."""
    secret = vault.read_secret(IDENTITY_DATABASE_SECRET)
    if secret is None or not secret.get("url"):
        raise DatabaseNotConfiguredError(
            f"Vault has no kv/{IDENTITY_DATABASE_SECRET}: run `moneypath up` or the bootstrap first"
        )
    return str(secret["url"])


def migration_database_url(vault: Vault) -> str:
    """The owner role's URL, for `evidence migrate`; the service itself never holds it."""
    secret = vault.read_secret(MIGRATION_DATABASE_SECRET)
    if secret is None or not secret.get("url"):
        raise DatabaseNotConfiguredError(f"Vault has no kv/{MIGRATION_DATABASE_SECRET}")
    return str(secret["url"])

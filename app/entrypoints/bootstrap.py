"""First-start set-up that needs Vault's root token: only the dev stack and tests use it.

In production an operator (or Terraform) does the same once; the apps then need only
their AppRole.
"""

from __future__ import annotations

from app.platform.migrate import upgrade
from app.platform.settings import VaultLogin
from app.platform.vault import Vault
from app.providers import api as providers_api

DATABASE_SECRET = "moneypath/database"  # noqa: S105 - a Vault path
EVIDENCE_DATABASE_SECRET = "moneypath/evidence-database"  # noqa: S105 - a Vault path


def bootstrap_dev(
    *, vault_addr: str, vault_token: str, database_url: str, evidence_database_url: str
) -> None:
    vault = Vault.login(vault_addr, VaultLogin(token=vault_token))
    vault.ensure_engines()
    vault.write_secret(DATABASE_SECRET, {"url": database_url})
    vault.write_secret(EVIDENCE_DATABASE_SECRET, {"url": evidence_database_url})
    # Provider API keys and webhook secrets: the simulator is started with the same ones.
    providers_api.ensure_provider_secrets(vault)
    upgrade(database_url)
    # Imported here: the anchor client needs the migrated identity tables.
    from app.entrypoints.anchors import register_client

    register_client(vault, database_url)

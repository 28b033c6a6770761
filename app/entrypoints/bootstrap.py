"""First-start set-up that needs Vault's root token and a database superuser: only the dev
stack and tests run it.

It does what an operator (or Terraform) does once in production, the same way: create the
owner and service roles with random passwords, migrate both databases as the owner, derive
the service roles' grants (app.platform.roles), and put each role's URL in Vault. The apps
then read only their own URL, and none of them can change the schema.
"""

from __future__ import annotations

import secrets

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from app.entrypoints import anchors
from app.platform import roles
from app.platform.db import libpq_url
from app.platform.migrate import APP_ROOT, upgrade
from app.platform.settings import VaultLogin
from app.platform.vault import Vault
from app.providers import api as providers_api

DATABASE_SECRET = "moneypath/database"  # noqa: S105 - a Vault path
WORKER_DATABASE_SECRET = "moneypath/worker-database"  # noqa: S105 - a Vault path
MIGRATION_DATABASE_SECRET = "moneypath/migration-database"  # noqa: S105 - a Vault path
EVIDENCE_DATABASE_SECRET = "moneypath/evidence-database"  # noqa: S105 - a Vault path
EVIDENCE_IDENTITY_DATABASE_SECRET = "moneypath/evidence-identity-database"  # noqa: S105
EVIDENCE_MIGRATION_DATABASE_SECRET = "moneypath/evidence-migration-database"  # noqa: S105


# The evidence service's own database: its branch plus the platform's (evidence/database.py).
EVIDENCE_MIGRATIONS = [
    APP_ROOT.parent / "evidence" / "migrations",
    APP_ROOT / "platform" / "migrations",
]


def _as(url: str, role: str, password: str) -> str:
    parsed = make_url(libpq_url(url)).set(username=role, password=password)
    return parsed.render_as_string(hide_password=False)


def _hand_over(connection: psycopg.Connection, schemas: tuple[str, ...]) -> None:
    """Give the owner role what it needs to migrate, and everything an earlier stack
    created as the superuser (a dev `.data/` from before the roles existed)."""
    database = connection.execute("SELECT current_database()").fetchone()
    assert database is not None
    owner = sql.Identifier(roles.OWNER_ROLE)
    connection.execute(
        sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(database[0]), owner
        )
    )
    connection.execute(sql.SQL("GRANT CREATE, USAGE ON SCHEMA public TO {}").format(owner))
    if connection.execute("SELECT to_regclass('public.alembic_version')").fetchone() != (None,):
        connection.execute(sql.SQL("ALTER TABLE public.alembic_version OWNER TO {}").format(owner))
    for schema in schemas:
        if connection.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone():
            connection.execute(
                sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(sql.Identifier(schema), owner)
            )
            for kind, name in connection.execute(
                """
                SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.relname
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'S')
                  AND pg_get_userbyid(c.relowner) <> %s
                  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid
                                  AND d.deptype = 'i')
                """,
                (schema, roles.OWNER_ROLE),
            ).fetchall():
                connection.execute(
                    sql.SQL("ALTER {} {} OWNER TO {}").format(
                        sql.SQL(kind), sql.Identifier(schema, name), owner
                    )
                )
            for (signature,) in connection.execute(
                """
                SELECT p.oid::regprocedure::text FROM pg_proc p
                JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = %s AND pg_get_userbyid(p.proowner) <> %s
                """,
                (schema, roles.OWNER_ROLE),
            ).fetchall():
                connection.execute(
                    sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(sql.SQL(signature), owner)
                )


def bootstrap_dev(
    *, vault_addr: str, vault_token: str, database_url: str, evidence_database_url: str
) -> None:
    """`database_url` and `evidence_database_url` name a role that may create roles."""
    vault = Vault.login(vault_addr, VaultLogin(token=vault_token))
    vault.ensure_engines()
    # Provider API keys and webhook secrets: the simulator is started with the same ones.
    providers_api.ensure_provider_secrets(vault)
    passwords = {
        role: secrets.token_urlsafe(24)
        for role in (
            roles.OWNER_ROLE,
            roles.API_ROLE,
            roles.WORKER_ROLE,
            roles.EVIDENCE_ROLE,
            roles.IDENTITY_CHECK_ROLE,
        )
    }
    with psycopg.connect(libpq_url(database_url), autocommit=True) as admin:
        for role, password in passwords.items():
            roles.ensure_login_role(admin, role, password)
        _hand_over(admin, roles.API_SCHEMAS)
    with psycopg.connect(libpq_url(evidence_database_url), autocommit=True) as admin:
        _hand_over(admin, roles.EVIDENCE_SCHEMAS)

    def url(base: str, role: str) -> str:
        return _as(base, role, passwords[role])

    api_owner = url(database_url, roles.OWNER_ROLE)
    evidence_owner = url(evidence_database_url, roles.OWNER_ROLE)
    upgrade(api_owner)
    upgrade(evidence_owner, EVIDENCE_MIGRATIONS)
    with psycopg.connect(api_owner, autocommit=True) as owner:
        roles.grant_service(owner, roles.API_ROLE, roles.API_SCHEMAS)
        roles.grant_service(owner, roles.WORKER_ROLE, roles.API_SCHEMAS)
        roles.grant_identity_check(owner, roles.IDENTITY_CHECK_ROLE)
    with psycopg.connect(evidence_owner, autocommit=True) as owner:
        roles.grant_service(owner, roles.EVIDENCE_ROLE, roles.EVIDENCE_SCHEMAS)
    vault.write_secret(DATABASE_SECRET, {"url": url(database_url, roles.API_ROLE)})
    vault.write_secret(WORKER_DATABASE_SECRET, {"url": url(database_url, roles.WORKER_ROLE)})
    vault.write_secret(MIGRATION_DATABASE_SECRET, {"url": api_owner})
    vault.write_secret(
        EVIDENCE_DATABASE_SECRET, {"url": url(evidence_database_url, roles.EVIDENCE_ROLE)}
    )
    vault.write_secret(
        EVIDENCE_IDENTITY_DATABASE_SECRET,
        {"url": url(database_url, roles.IDENTITY_CHECK_ROLE)},
    )
    vault.write_secret(EVIDENCE_MIGRATION_DATABASE_SECRET, {"url": evidence_owner})
    # The worker's client of the evidence service (it anchors the ledger's chain head),
    # registered as the owner, like every other first-start write; the worker itself only
    # reads its credentials from Vault and keeps its least-privilege role.
    anchors.register_client(vault, api_owner)
    # Reconciliation's own evidence client, the one writer of `recon.run` records.
    anchors.register_recon_client(vault, api_owner)

"""Database roles: one owner that migrates, and service roles that own nothing.

The owner role runs every migration and so owns every schema, table and function. The
API, the worker and the evidence service log in as roles that hold only DML, and only
the DML a table's kind allows. The grants are not a hand-written list: `grant_service`
derives them, after every migration, from one rule over each schema's tables, so a table
another domain adds later gets its grants without anyone remembering to write them:

- USAGE on the schema, SELECT and INSERT on every table, USAGE on its sequences,
  EXECUTE on its functions;
- UPDATE and DELETE only on tables that are not append-only. A table is append-only
  when a trigger runs `platform.refuse_change()` on it, which is how every append-only
  table in this code base is declared;
- never TRUNCATE, TRIGGER, REFERENCES or any DDL, and no grant on a partition itself
  (rows are reached through the parent, whose privileges PostgreSQL checks).

`ledger.balances` is the one mutable ledger table (the row every writer locks and
updates); it is not append-only, so the service role may UPDATE it. What keeps it honest
is that it is a cache of the append-only, hash-chained postings: `GET /v1/ledger/verify`
recomputes every balance from postings and names a mismatch (README, "Database roles").
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
from psycopg import sql

OWNER_ROLE = "moneypath_owner"
API_ROLE = "moneypath_api"
WORKER_ROLE = "moneypath_worker"
EVIDENCE_ROLE = "moneypath_evidence"
# Logs in to the API database only to ask identity.key_is_active() (evidence service).
IDENTITY_CHECK_ROLE = "moneypath_identity_check"

API_SCHEMAS = ("platform", "identity", "ledger", "payments", "risk", "providers", "reconciliation")
EVIDENCE_SCHEMAS = ("platform", "evidence")

_TABLES = """
SELECT c.relname,
       EXISTS (
           SELECT 1 FROM pg_trigger t
           WHERE t.tgrelid = c.oid AND NOT t.tgisinternal
             AND t.tgfoid = to_regprocedure('platform.refuse_change()')
       ) AS append_only
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname
"""


def _schemas_present(connection: psycopg.Connection, schemas: Iterable[str]) -> list[str]:
    wanted = list(schemas)
    rows = connection.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (wanted,)
    ).fetchall()
    found = {row[0] for row in rows}
    return [schema for schema in wanted if schema in found]


def grant_service(connection: psycopg.Connection, role: str, schemas: Iterable[str]) -> None:
    """Give `role` exactly the rule's privileges on `schemas` (revoking anything else on
    their tables first, so a table that became append-only loses UPDATE and DELETE)."""
    grantee = sql.Identifier(role)
    for schema in _schemas_present(connection, schemas):
        name = sql.Identifier(schema)
        connection.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(name, grantee))
        for table, append_only in connection.execute(_TABLES, (schema,)).fetchall():
            target = sql.Identifier(schema, table)
            connection.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(target, grantee))
            privileges = "SELECT, INSERT" if append_only else "SELECT, INSERT, UPDATE, DELETE"
            connection.execute(
                sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(privileges), target, grantee)
            )
        connection.execute(
            sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(name, grantee)
        )
        connection.execute(
            sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {} TO {}").format(name, grantee)
        )


def grant_identity_check(connection: psycopg.Connection, role: str) -> None:
    """The evidence service's role on the API database: one function, nothing else."""
    grantee = sql.Identifier(role)
    connection.execute(sql.SQL("GRANT USAGE ON SCHEMA identity TO {}").format(grantee))
    connection.execute(
        sql.SQL("GRANT EXECUTE ON FUNCTION identity.key_is_active(text, text) TO {}").format(
            grantee
        )
    )


def ensure_login_role(connection: psycopg.Connection, role: str, password: str) -> None:
    """Create `role` (LOGIN, no other attribute) or reset its password. Needs CREATEROLE."""
    exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    connection.execute(
        sql.SQL(
            verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD {}"
        ).format(sql.Identifier(role), sql.Literal(password))
    )

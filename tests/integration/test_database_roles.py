"""Issue 10 item 5: the services' database roles own nothing and cannot break the
append-only promise. Each statement runs as the role the service really logs in as (its
URL from Vault, written by the same bootstrap the dev stack runs) and must fail with a
permission error."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from app.entrypoints.bootstrap import (
    DATABASE_SECRET,
    EVIDENCE_DATABASE_SECRET,
    EVIDENCE_IDENTITY_DATABASE_SECRET,
    WORKER_DATABASE_SECRET,
)
from app.entrypoints.devstack import Stack
from app.entrypoints.launchers.openbao import DEV_ROOT_TOKEN
from app.platform import roles
from app.platform.db import libpq_url
from app.platform.settings import VaultLogin
from app.platform.vault import Vault


def _url(stack: Stack, secret: str) -> str:
    vault = Vault.login(stack.vault_addr, VaultLogin(token=DEV_ROOT_TOKEN))
    found = vault.read_secret(secret)
    assert found is not None
    return libpq_url(str(found["url"]))


API_REFUSED = [
    "ALTER TABLE ledger.postings DISABLE TRIGGER postings_append_only",
    "ALTER TABLE platform.audit_log DISABLE TRIGGER ALL",
    "CREATE OR REPLACE FUNCTION platform.refuse_change() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
    "TRUNCATE ledger.postings_default",
    "TRUNCATE platform.audit_log_default",
    "TRUNCATE ledger.journal_entries",
    "UPDATE ledger.postings SET amount_minor = amount_minor + 1",
    "DELETE FROM ledger.journal_entries",
    "UPDATE ledger.transactions SET description = 'edited'",
    "UPDATE platform.audit_log SET outcome = 'success'",
    "DELETE FROM platform.audit_log",
    "DROP TRIGGER postings_append_only ON ledger.postings",
    "CREATE TABLE ledger.shadow (id int)",
    "CREATE SCHEMA shadow",
    "ALTER TABLE identity.clients ADD COLUMN note text",
    "CREATE TRIGGER sneak BEFORE INSERT ON ledger.postings "
    "FOR EACH ROW EXECUTE FUNCTION platform.refuse_change()",
]


@pytest.mark.parametrize("secret", [DATABASE_SECRET, WORKER_DATABASE_SECRET])
@pytest.mark.parametrize("statement", API_REFUSED)
def test_service_role_is_refused_when_it_tries_to_bypass_append_only(
    stack: Stack, secret: str, statement: str
) -> None:
    with (
        psycopg.connect(_url(stack, secret)) as connection,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        connection.execute(statement)


EVIDENCE_REFUSED = [
    "UPDATE evidence.records SET result = 'pass'",
    "DELETE FROM evidence.records",
    "TRUNCATE evidence.records",
    "TRUNCATE evidence.tree_nodes",
    "ALTER TABLE evidence.records DISABLE TRIGGER ALL",
    "CREATE OR REPLACE FUNCTION platform.refuse_change() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
    "UPDATE evidence.checkpoints SET note = ''",
    "DELETE FROM platform.audit_log",
]


@pytest.mark.parametrize("statement", EVIDENCE_REFUSED)
def test_evidence_role_is_refused_when_it_tries_to_rewrite_the_log(
    stack: Stack, statement: str
) -> None:
    with (
        psycopg.connect(_url(stack, EVIDENCE_DATABASE_SECRET)) as connection,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        connection.execute(statement)


def test_identity_check_role_can_only_ask_whether_a_key_is_active(stack: Stack) -> None:
    with psycopg.connect(_url(stack, EVIDENCE_IDENTITY_DATABASE_SECRET)) as connection:
        row = connection.execute("SELECT identity.key_is_active('cli_nobody', NULL)").fetchone()
        assert row == (False,)
        connection.rollback()
        with pytest.raises(errors.InsufficientPrivilege):
            connection.execute("SELECT secret_hash FROM identity.clients")


def test_service_roles_own_nothing_and_hold_no_attributes(stack: Stack) -> None:
    assert stack.database_url is not None
    service_roles = [
        roles.API_ROLE,
        roles.WORKER_ROLE,
        roles.EVIDENCE_ROLE,
        roles.IDENTITY_CHECK_ROLE,
    ]
    with psycopg.connect(libpq_url(stack.database_url)) as connection:
        owned = connection.execute(
            """
            SELECT pg_get_userbyid(relowner), count(*) FROM pg_class
            WHERE pg_get_userbyid(relowner) = ANY(%s) GROUP BY 1
            """,
            (service_roles,),
        ).fetchall()
        assert owned == []
        attributes = connection.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) "
            "AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls)",
            (service_roles,),
        ).fetchall()
        assert attributes == []
        # The append-only tables grant nothing beyond SELECT and INSERT, by the rule.
        granted = connection.execute(
            """
            SELECT table_schema || '.' || table_name, privilege_type
            FROM information_schema.role_table_grants
            WHERE grantee = %s AND privilege_type NOT IN ('SELECT', 'INSERT')
              AND table_schema || '.' || table_name IN (
                'ledger.postings', 'ledger.journal_entries', 'ledger.transactions',
                'ledger.accounts', 'platform.audit_log')
            """,
            (roles.API_ROLE,),
        ).fetchall()
        assert granted == []


def test_worker_creates_partitions_only_through_the_owners_function(stack: Stack) -> None:
    with psycopg.connect(_url(stack, WORKER_DATABASE_SECRET)) as connection:
        made = connection.execute(
            "SELECT platform.ensure_month_partitions('platform.audit_log', 6)"
        ).fetchone()
        assert made is not None
        connection.commit()
        with pytest.raises(errors.InsufficientPrivilege):
            connection.execute(
                "CREATE TABLE platform.audit_log_209901 PARTITION OF platform.audit_log "
                "FOR VALUES FROM ('2099-01-01') TO ('2099-02-01')"
            )


def test_new_table_gets_grants_from_the_rule_when_a_migration_adds_it(stack: Stack) -> None:
    """A later table, append-only or not, is covered without a hand-written grant."""
    from app.entrypoints.bootstrap import MIGRATION_DATABASE_SECRET

    owner_url = _url(stack, MIGRATION_DATABASE_SECRET)
    with psycopg.connect(owner_url, autocommit=True) as owner:
        owner.execute("CREATE TABLE IF NOT EXISTS platform.rule_probe_facts (id int)")
        owner.execute("DROP TRIGGER IF EXISTS probe_append_only ON platform.rule_probe_facts")
        owner.execute(
            "CREATE TRIGGER probe_append_only BEFORE UPDATE OR DELETE "
            "ON platform.rule_probe_facts FOR EACH ROW EXECUTE FUNCTION platform.refuse_change()"
        )
        owner.execute("CREATE TABLE IF NOT EXISTS platform.rule_probe_state (id int)")
        roles.grant_service(owner, roles.API_ROLE, roles.API_SCHEMAS)
    try:
        with psycopg.connect(_url(stack, DATABASE_SECRET), autocommit=True) as api:
            api.execute("INSERT INTO platform.rule_probe_facts VALUES (1)")
            api.execute("INSERT INTO platform.rule_probe_state VALUES (1)")
            api.execute("UPDATE platform.rule_probe_state SET id = 2")
            with pytest.raises(errors.InsufficientPrivilege):
                api.execute("UPDATE platform.rule_probe_facts SET id = 2")
    finally:
        with psycopg.connect(owner_url, autocommit=True) as owner:
            owner.execute("DROP TABLE platform.rule_probe_facts, platform.rule_probe_state")

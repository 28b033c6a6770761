"""identity: `identity.key_is_active()` in PL/pgSQL, so its query is planned once per session

The same question, answer and privileges as identity_0002. A `LANGUAGE sql` function
that cannot be inlined (this one is SECURITY DEFINER with its own search_path, which it
must keep) is parsed and planned again on every call in PostgreSQL 16: the admission
statement of every signed request paid that, about 215 µs of backend CPU per call against
about 93 µs for this version, which PL/pgSQL keeps planned for the session (issue 16).

Revision ID: identity_0003
Revises: identity_0002
"""

import importlib

from alembic import op

revision = "identity_0003"
down_revision = "identity_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # CREATE OR REPLACE keeps the function's owner and grants (EXECUTE for the evidence
    # service's role, none for PUBLIC).
    op.execute(
        """
        CREATE OR REPLACE FUNCTION identity.key_is_active(client_id text, key_id text)
        RETURNS boolean
        LANGUAGE plpgsql STABLE SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS $$
        BEGIN
            RETURN coalesce((
                SELECT NOT c.disabled AND (
                    key_is_active.key_id IS NULL OR EXISTS (
                        SELECT 1 FROM identity.client_keys k
                        WHERE k.key_id = key_is_active.key_id AND k.client_id = c.id
                          AND k.not_before <= now()
                          AND (k.not_after IS NULL OR now() < k.not_after)
                    )
                )
                FROM identity.clients c WHERE c.id = key_is_active.client_id
            ), false);
        END
        $$
        """
    )


def downgrade() -> None:
    # identity_0002's function again (its upgrade is a CREATE OR REPLACE).
    importlib.import_module("app.identity.migrations.0002_identity_active_check").upgrade()

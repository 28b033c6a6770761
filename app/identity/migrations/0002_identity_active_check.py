"""identity: one SQL function answers "is this client and key usable now?"

The API and the evidence service both refuse a disabled client or a retired key on every
request. The evidence service has its own database and may not read identity's tables;
it is granted EXECUTE on this function only, which reveals one boolean per question.

Revision ID: identity_0002
Revises: identity_0001
"""

from alembic import op

revision = "identity_0002"
down_revision = "identity_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE OR REPLACE FUNCTION identity.key_is_active(client_id text, key_id text)
        RETURNS boolean
        LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS $$
            SELECT coalesce((
                SELECT NOT c.disabled AND (
                    key_is_active.key_id IS NULL OR EXISTS (
                        SELECT 1 FROM identity.client_keys k
                        WHERE k.key_id = key_is_active.key_id AND k.client_id = c.id
                          AND k.not_before <= now()
                          AND (k.not_after IS NULL OR now() < k.not_after)
                    )
                )
                FROM identity.clients c WHERE c.id = key_is_active.client_id
            ), false)
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION identity.key_is_active(text, text) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION identity.key_is_active(text, text)")

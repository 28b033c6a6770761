"""platform: refuse a completion whose idempotency claim was taken over, inside SQL

An idempotency key's completion is sent in the same round trip as its transaction's
COMMIT (db.send_with_commit), so nobody reads its result before the commit: a lost claim
must abort the transaction from inside the statement. This function does, with its own
SQLSTATE, which app/platform/idempotency.py turns into ClaimLostError.

Revision ID: platform_0005_claim_held
Revises: platform_0004_partitions_owner
"""

from alembic import op

revision = "platform_0005_claim_held"
down_revision = "platform_0004_partitions_owner"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION platform.require_claim_held(held boolean) RETURNS boolean
        LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp
        AS $$
        BEGIN
            IF NOT held THEN
                RAISE EXCEPTION 'the idempotency claim was taken over by a retry'
                    USING ERRCODE = 'MPIC1';
            END IF;
            RETURN true;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION platform.require_claim_held(boolean)")

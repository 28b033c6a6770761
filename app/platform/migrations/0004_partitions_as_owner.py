"""platform: the worker creates partitions through the owner, never with DDL of its own

The worker's role holds no CREATE on any schema. `ensure_month_partitions` runs as its
owner (SECURITY DEFINER) with a fixed search_path, so the worker can add next month's
partitions of a partitioned table and do nothing else of the kind.

Revision ID: platform_0004_partitions_owner
Revises: platform_0003_auth_failures
"""

from alembic import op

revision = "platform_0004_partitions_owner"
down_revision = "platform_0003_auth_failures"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER FUNCTION platform.ensure_month_partitions(regclass, integer)
        SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        """
    )
    op.execute(
        "REVOKE ALL ON FUNCTION platform.ensure_month_partitions(regclass, integer) FROM PUBLIC"
    )


def downgrade() -> None:
    op.execute(
        "ALTER FUNCTION platform.ensure_month_partitions(regclass, integer) SECURITY INVOKER"
    )

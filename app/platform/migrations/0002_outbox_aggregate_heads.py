"""outbox: index the unpublished events by aggregate, for the relay's per-aggregate heads

Revision ID: platform_0002
Revises: platform_0001
"""

from alembic import op

revision = "platform_0002"
down_revision = "platform_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_outbox_unpublished_aggregate ON platform.outbox (aggregate_id, id)"
        " WHERE published_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX platform.ix_outbox_unpublished_aggregate")

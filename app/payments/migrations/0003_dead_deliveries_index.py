"""payments: a partial index over dead-lettered deliveries

`/metrics` counts dead letters at every scrape (API and worker, every 15 s or so) and the
CLI lists them; without this both read the whole deliveries table, which grows with every
event and endpoint. Dead letters are few, so the index stays small.

Revision ID: payments_0003
Revises: payments_0002
"""

from alembic import op

revision = "payments_0003"
down_revision = "payments_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_deliveries_dead ON payments.deliveries (id)"
        " WHERE status = 'dead'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS payments.ix_deliveries_dead")

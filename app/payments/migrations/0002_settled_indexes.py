"""payments: indexes for what reconciliation asks of payments: settled money by time (a
day's window, and the oldest not yet reconciled) and a payment by its provider reference.

Without them every reconciliation run and every lag refresh scans all steps, refunds and
payouts ever made.

Revision ID: payments_0002
Revises: payments_0001
"""

from alembic import op

revision = "payments_0002"
down_revision = "payments_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_steps_capture_finished ON payments.steps (finished_at)"
        " WHERE name = 'capture' AND status = 'succeeded'"
    )
    op.execute(
        "CREATE INDEX ix_refunds_succeeded ON payments.refunds (updated_at)"
        " WHERE status = 'succeeded'"
    )
    op.execute(
        "CREATE INDEX ix_payouts_paid ON payments.payouts (provider, updated_at)"
        " WHERE status = 'paid'"
    )
    op.execute(
        "CREATE INDEX ix_payments_provider_ref ON payments.payments (provider, provider_ref)"
        " WHERE provider_ref IS NOT NULL"
    )


def downgrade() -> None:
    for name in (
        "ix_steps_capture_finished",
        "ix_refunds_succeeded",
        "ix_payouts_paid",
        "ix_payments_provider_ref",
    ):
        op.execute(f"DROP INDEX payments.{name}")

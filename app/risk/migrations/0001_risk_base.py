"""risk schema: velocity counters and the manual review queue

Revision ID: risk_0001
Revises:
"""

from alembic import op

revision = "risk_0001"
down_revision = None
branch_labels = ("risk",)
depends_on = "platform_0001"


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS risk")
    # One row per assessed payment: the velocity counters are counts and sums over a
    # customer's rows in a window. A row per payment (not a bucketed counter) keeps the
    # windows exact and makes a repeated assessment of the same payment count once.
    op.execute(
        """
        CREATE TABLE risk.velocity_events (
            payment_id text PRIMARY KEY,
            customer_id text NOT NULL,
            currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
            amount_minor bigint NOT NULL CHECK (amount_minor > 0),
            outcome text NOT NULL CHECK (outcome IN ('approve', 'review', 'decline')),
            occurred_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_velocity_customer_time ON risk.velocity_events (customer_id, occurred_at)"
    )
    op.execute("CREATE INDEX ix_velocity_time ON risk.velocity_events (occurred_at)")
    op.execute(
        """
        CREATE TABLE risk.reviews (
            id text PRIMARY KEY,
            payment_id text NOT NULL UNIQUE,
            client_id text NOT NULL,
            customer_id text NOT NULL,
            amount_minor bigint NOT NULL CHECK (amount_minor > 0),
            currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
            reasons text[] NOT NULL,
            decision_id text,
            status text NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'approved', 'rejected')),
            decision_reason text CHECK (length(decision_reason) <= 500),
            decided_by text,
            decided_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            CHECK ((status = 'open') = (decided_at IS NULL)),
            CHECK ((status = 'open') = (decided_by IS NULL))
        )
        """
    )
    op.execute("CREATE INDEX ix_reviews_status ON risk.reviews (status, created_at, id)")


def downgrade() -> None:
    op.execute("DROP SCHEMA risk CASCADE")

"""platform: counters of failed authentications, per client id and per source address

One row per (scope, key, fixed window). Every replica counts into the same rows, so the
bound holds across replicas. The worker turns finished windows into one audit summary
each and deletes them, so the table holds at most the current windows.

Revision ID: platform_0003_auth_failures
Revises: platform_0002_idem_target
"""

from alembic import op

revision = "platform_0003_auth_failures"
down_revision = "platform_0002_idem_target"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE platform.auth_failures (
            scope text NOT NULL CHECK (scope IN ('client', 'address')),
            key text NOT NULL CHECK (length(key) BETWEEN 1 AND 256),
            window_start timestamptz NOT NULL,
            failures integer NOT NULL DEFAULT 0,
            blocked integer NOT NULL DEFAULT 0,
            PRIMARY KEY (scope, key, window_start)
        )
        """
    )
    op.execute("CREATE INDEX ix_auth_failures_window ON platform.auth_failures (window_start)")


def downgrade() -> None:
    op.execute("DROP TABLE platform.auth_failures")

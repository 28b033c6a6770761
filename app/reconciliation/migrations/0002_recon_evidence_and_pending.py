"""reconciliation: each run's evidence record id (null until written), its tolerances and
times (so the record can be rebuilt byte for byte on a retry), and the records a run left
pending (not yet named by any file, inside the date tolerance).

Revision ID: recon_0002
Revises: recon_0001
"""

from alembic import op

revision = "recon_0002"
down_revision = "recon_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE reconciliation.runs
            ADD COLUMN evidence_id text CHECK (evidence_id ~ '^evd_[0-9a-f]{32}$'),
            ADD COLUMN tolerance_minor bigint NOT NULL DEFAULT 0 CHECK (tolerance_minor >= 0),
            ADD COLUMN tolerance_days integer NOT NULL DEFAULT 0 CHECK (tolerance_days >= 0),
            ADD COLUMN started_at timestamptz,
            ADD COLUMN finished_at timestamptz
        """
    )
    op.execute("UPDATE reconciliation.runs SET started_at = created_at, finished_at = created_at")
    op.execute(
        "ALTER TABLE reconciliation.runs ALTER COLUMN started_at SET NOT NULL,"
        " ALTER COLUMN finished_at SET NOT NULL"
    )
    # The worker's retry finds runs whose evidence is still owed without a scan.
    op.execute(
        "CREATE INDEX ix_recon_runs_evidence_owed ON reconciliation.runs (created_at, id)"
        " WHERE evidence_id IS NULL"
    )
    # Records a run saw but no line named yet (younger than the date tolerance): the next
    # runs of the provider look at them again, and the lag gauge counts them unreconciled.
    op.execute(
        """
        CREATE TABLE reconciliation.pending_items (
            run_id text NOT NULL REFERENCES reconciliation.runs (id),
            provider text NOT NULL,
            kind text NOT NULL CHECK (kind IN ('capture', 'refund', 'payout')),
            reference text NOT NULL,
            settled_at timestamptz NOT NULL
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_recon_pending_provider"
        " ON reconciliation.pending_items (provider, settled_at)"
    )
    op.execute(
        "CREATE INDEX ix_recon_exceptions_open_provider"
        " ON reconciliation.exceptions (provider, settlement_date) WHERE status = 'open'"
    )


def downgrade() -> None:
    op.execute("DROP TABLE reconciliation.pending_items")
    op.execute("DROP INDEX reconciliation.ix_recon_runs_evidence_owed")
    op.execute("DROP INDEX reconciliation.ix_recon_exceptions_open_provider")
    op.execute(
        "ALTER TABLE reconciliation.runs DROP COLUMN evidence_id, DROP COLUMN tolerance_minor,"
        " DROP COLUMN tolerance_days, DROP COLUMN started_at, DROP COLUMN finished_at"
    )

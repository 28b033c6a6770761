"""reconciliation schema: runs and their exceptions queue (named as roles.API_SCHEMAS grants)

Revision ID: recon_0001
Revises:
"""

from alembic import op

revision = "recon_0001"
down_revision = None
branch_labels = ("recon",)
depends_on = "platform_0001"


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS reconciliation")
    # One run per provider and settlement day: the unique pair is what makes a second
    # request (or the worker and an operator at once) return the first run.
    op.execute(
        """
        CREATE TABLE reconciliation.runs (
            id text PRIMARY KEY,
            provider text NOT NULL,
            settlement_date date NOT NULL,
            source text NOT NULL CHECK (source IN ('fetched', 'uploaded')),
            file_sha256 text NOT NULL CHECK (file_sha256 ~ '^[0-9a-f]{64}$'),
            lines integer NOT NULL CHECK (lines >= 0),
            matched integer NOT NULL CHECK (matched >= 0),
            unmatched_internal integer NOT NULL CHECK (unmatched_internal >= 0),
            unmatched_provider integer NOT NULL CHECK (unmatched_provider >= 0),
            amount_mismatches integer NOT NULL CHECK (amount_mismatches >= 0),
            currency_mismatches integer NOT NULL CHECK (currency_mismatches >= 0),
            duplicates integer NOT NULL CHECK (duplicates >= 0),
            pending integer NOT NULL CHECK (pending >= 0),
            started_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (provider, settlement_date)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE reconciliation.exceptions (
            id text PRIMARY KEY,
            run_id text NOT NULL REFERENCES reconciliation.runs (id),
            provider text NOT NULL,
            settlement_date date NOT NULL,
            line_class text NOT NULL CHECK (line_class IN ('missing_internally',
                'missing_at_provider', 'amount_mismatch', 'currency_mismatch', 'duplicate')),
            line_numbers integer[] NOT NULL,
            provider_references text[] NOT NULL,
            provider_gross_minor bigint,
            internal_minor bigint,
            fee_minor bigint NOT NULL DEFAULT 0,
            currencies text[] NOT NULL,
            status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
            resolution_reason text CHECK (length(resolution_reason) <= 500),
            resolved_by text,
            resolved_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            CHECK ((status = 'open') = (resolved_at IS NULL)),
            CHECK ((status = 'open') = (resolved_by IS NULL))
        )
        """
    )
    op.execute("CREATE INDEX ix_recon_exceptions_run ON reconciliation.exceptions (run_id, id)")
    op.execute(
        "CREATE INDEX ix_recon_exceptions_status"
        " ON reconciliation.exceptions (status, created_at, id)"
    )


def downgrade() -> None:
    op.execute("DROP SCHEMA reconciliation CASCADE")

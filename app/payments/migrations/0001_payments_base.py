"""payments schema: payments, saga steps, refunds, payouts, webhook endpoints and deliveries

Revision ID: payments_0001
Revises:
"""

from alembic import op

revision = "payments_0001"
down_revision = None
branch_labels = ("payments",)
depends_on = "platform_0001"

_STATUSES = (
    "'pending', 'pending_review', 'authorized', 'captured', 'partially_refunded', "
    "'refunded', 'voided', 'declined', 'failed'"
)


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS payments")
    op.execute(
        f"""
        CREATE TABLE payments.payments (
            id text PRIMARY KEY,
            owner text NOT NULL,
            -- The creating request's Idempotency-Key: a retry after a crash finds the
            -- payment it started instead of charging a second time.
            request_key text NOT NULL,
            customer_id text NOT NULL,
            merchant_account_id text NOT NULL,
            amount_minor bigint NOT NULL CHECK (amount_minor > 0),
            currency text NOT NULL CHECK (currency ~ '^[A-Z]{{3}}$'),
            capture_mode text NOT NULL CHECK (capture_mode IN ('automatic', 'manual')),
            token text NOT NULL,
            status text NOT NULL CHECK (status IN ({_STATUSES})),
            provider text,
            provider_ref text,
            route_rule text,
            hold_transaction_id text,
            captured_minor bigint NOT NULL DEFAULT 0 CHECK (captured_minor >= 0),
            refunded_minor bigint NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
            ledger_transaction_ids text[] NOT NULL DEFAULT '{{}}',
            risk_decision_id text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (owner, request_key),
            CHECK (refunded_minor <= captured_minor),
            CHECK (captured_minor <= amount_minor)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE payments.steps (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            -- The saga the step belongs to: a payment (pay_) or a payout (po_).
            saga_id text NOT NULL,
            name text NOT NULL,
            status text NOT NULL
                CHECK (status IN ('started', 'succeeded', 'failed', 'compensated', 'skipped')),
            attempts integer NOT NULL DEFAULT 0,
            provider text,
            provider_ref text,
            -- The key sent to the provider: every retry and the recovery lookup reuse it.
            provider_key text,
            amount_minor bigint,
            subject_id text,
            detail jsonb NOT NULL DEFAULT '{}'::jsonb,
            started_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX ix_steps_saga ON payments.steps (saga_id, id)")
    op.execute(
        "CREATE INDEX ix_steps_started ON payments.steps (updated_at) WHERE status = 'started'"
    )
    op.execute(
        """
        CREATE TABLE payments.refunds (
            id text PRIMARY KEY,
            payment_id text NOT NULL REFERENCES payments.payments (id),
            owner text NOT NULL,
            amount_minor bigint NOT NULL CHECK (amount_minor > 0),
            status text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
            provider_ref text,
            ledger_transaction_id text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX ix_refunds_payment ON payments.refunds (payment_id)")
    op.execute(
        """
        CREATE TABLE payments.payouts (
            id text PRIMARY KEY,
            owner text NOT NULL,
            account_id text NOT NULL,
            amount_minor bigint NOT NULL CHECK (amount_minor > 0),
            currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
            provider text NOT NULL,
            bank_token text NOT NULL,
            status text NOT NULL CHECK (status IN ('pending', 'paid', 'failed')),
            provider_ref text,
            ledger_transaction_ids text[] NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE payments.clearing_accounts (
            provider text NOT NULL,
            currency text NOT NULL,
            account_id text NOT NULL,
            PRIMARY KEY (provider, currency)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE payments.webhook_endpoints (
            id text PRIMARY KEY,
            owner text NOT NULL,
            url text NOT NULL,
            event_types text[] NOT NULL,
            description text,
            enabled boolean NOT NULL DEFAULT true,
            disabled_reason text,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE payments.deliveries (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            endpoint_id text NOT NULL REFERENCES payments.webhook_endpoints (id),
            event_id text NOT NULL,
            event_type text NOT NULL,
            -- The snapshot taken when the event committed; every attempt sends these bytes.
            body text NOT NULL,
            status text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'delivered', 'dead', 'cancelled')),
            attempts integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            last_status_code integer,
            last_error text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (endpoint_id, event_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_deliveries_due ON payments.deliveries (next_attempt_at)"
        " WHERE status = 'pending'"
    )
    op.execute(
        """
        CREATE TABLE payments.inbound_webhooks (
            provider text NOT NULL,
            webhook_id text NOT NULL,
            event_type text NOT NULL,
            payment_id text,
            outcome text NOT NULL,
            seen_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (provider, webhook_id)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP SCHEMA payments CASCADE")

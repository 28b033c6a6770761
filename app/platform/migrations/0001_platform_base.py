"""platform schema: shared helpers, idempotency keys, nonces, audit log, outbox

Revision ID: platform_0001
Revises:
"""

from alembic import op

revision = "platform_0001"
down_revision = None
branch_labels = ("platform",)
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS platform")
    # One trigger function for every append-only table in every schema.
    op.execute(
        """
        CREATE OR REPLACE FUNCTION platform.refuse_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'table %.% is append-only: % refused',
                TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    # Creates monthly partitions of a range-partitioned table, from the current month
    # through `months_ahead` months ahead. Idempotent; the maintenance worker calls it.
    op.execute(
        """
        CREATE OR REPLACE FUNCTION platform.ensure_month_partitions(
            parent regclass, months_ahead integer) RETURNS integer
        LANGUAGE plpgsql AS $$
        DECLARE
            month_start date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
            made integer := 0;
            child text;
            parent_name text;
            parent_schema text;
        BEGIN
            SELECT n.nspname, c.relname INTO parent_schema, parent_name
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.oid = parent;
            FOR i IN 0..months_ahead LOOP
                child := format('%s_%s', parent_name,
                                to_char(month_start + make_interval(months => i), 'YYYYMM'));
                IF to_regclass(format('%I.%I', parent_schema, child)) IS NULL THEN
                    EXECUTE format(
                        'CREATE TABLE %I.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                        parent_schema, child, parent,
                        (month_start + make_interval(months => i))::timestamptz,
                        (month_start + make_interval(months => i + 1))::timestamptz);
                    made := made + 1;
                END IF;
            END LOOP;
            RETURN made;
        END $$
        """
    )
    op.execute(
        """
        CREATE TABLE platform.idempotency_keys (
            client_id text NOT NULL,
            method text NOT NULL,
            route text NOT NULL,
            key text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
            fingerprint text NOT NULL,
            status text NOT NULL CHECK (status IN ('in_progress', 'completed')),
            claim_token text,
            response_status integer,
            response_body jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            locked_until timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            PRIMARY KEY (client_id, method, route, key)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_idempotency_keys_expires_at ON platform.idempotency_keys (expires_at)"
    )
    op.execute(
        """
        CREATE TABLE platform.seen_nonces (
            key_id text NOT NULL,
            nonce text NOT NULL,
            expires_at timestamptz NOT NULL,
            PRIMARY KEY (key_id, nonce)
        )
        """
    )
    op.execute("CREATE INDEX ix_seen_nonces_expires_at ON platform.seen_nonces (expires_at)")
    op.execute(
        """
        CREATE TABLE platform.audit_log (
            id bigint GENERATED ALWAYS AS IDENTITY,
            occurred_at timestamptz NOT NULL DEFAULT now(),
            actor text,
            event_type text NOT NULL,
            outcome text NOT NULL CHECK (outcome IN ('success', 'failure')),
            code text,
            origin_ip text,
            request_id text,
            resource_type text,
            resource_id text,
            decision_id text,
            details jsonb NOT NULL DEFAULT '{}'::jsonb,
            PRIMARY KEY (id, occurred_at)
        ) PARTITION BY RANGE (occurred_at)
        """
    )
    op.execute("CREATE TABLE platform.audit_log_default PARTITION OF platform.audit_log DEFAULT")
    op.execute("SELECT platform.ensure_month_partitions('platform.audit_log', 3)")
    op.execute("CREATE INDEX ix_audit_log_actor_time ON platform.audit_log (actor, occurred_at)")
    op.execute(
        "CREATE INDEX ix_audit_log_resource ON platform.audit_log (resource_type, resource_id)"
    )
    op.execute(
        """
        CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON platform.audit_log
        FOR EACH ROW EXECUTE FUNCTION platform.refuse_change()
        """
    )
    op.execute(
        """
        CREATE TABLE platform.outbox (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_id text NOT NULL UNIQUE,
            event_type text NOT NULL,
            event_version integer NOT NULL,
            aggregate_id text NOT NULL,
            payload jsonb NOT NULL,
            occurred_at timestamptz NOT NULL DEFAULT now(),
            published_at timestamptz,
            attempts integer NOT NULL DEFAULT 0
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_outbox_unpublished ON platform.outbox (id) WHERE published_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP SCHEMA platform CASCADE")

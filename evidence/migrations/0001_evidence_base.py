"""evidence schema: records, Merkle tree nodes, log state, checkpoints, attachments

Revision ID: evidence_0001
Revises:
"""

from alembic import op

revision = "evidence_0001"
down_revision = None
branch_labels = ("evidence",)
depends_on = "platform_0001"

_APPEND_ONLY = ("records", "record_controls", "tree_nodes", "checkpoints", "attachments")


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS evidence")
    # One row: the log's size and frontier (roots of the perfect subtrees that make up
    # the tree). Appends lock it FOR UPDATE, which serializes them so `seq` has no gaps.
    op.execute(
        """
        CREATE TABLE evidence.log_state (
            id smallint PRIMARY KEY CHECK (id = 1),
            size bigint NOT NULL CHECK (size >= 0),
            frontier bytea[] NOT NULL,
            last_collected_at timestamptz
        )
        """
    )
    op.execute("INSERT INTO evidence.log_state (id, size, frontier) VALUES (1, 0, '{}')")
    # The size may only grow: a rollback of the counter would reuse sequence numbers.
    op.execute(
        """
        CREATE OR REPLACE FUNCTION evidence.log_state_only_grows() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' OR NEW.size < OLD.size THEN
                RAISE EXCEPTION 'evidence.log_state may only grow'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER log_state_only_grows BEFORE UPDATE OR DELETE ON evidence.log_state
        FOR EACH ROW EXECUTE FUNCTION evidence.log_state_only_grows()
        """
    )
    op.execute(
        """
        CREATE TABLE evidence.records (
            seq bigint PRIMARY KEY CHECK (seq >= 0),
            id text NOT NULL UNIQUE,
            type text NOT NULL,
            result text NOT NULL CHECK (result IN ('pass', 'fail', 'error', 'info')),
            commit text,
            collected_at timestamptz NOT NULL,
            record jsonb NOT NULL,
            leaf_hash bytea NOT NULL CHECK (length(leaf_hash) = 32)
        )
        """
    )
    # collected_at never decreases with seq (the append path clamps it), so a time range
    # is a seq range: these two lookups turn [from, to) into seq bounds.
    op.execute("CREATE INDEX ix_records_collected_at ON evidence.records (collected_at, seq)")
    op.execute("CREATE INDEX ix_records_type_seq ON evidence.records (type, seq)")
    op.execute("CREATE INDEX ix_records_result_seq ON evidence.records (result, seq)")
    op.execute(
        "CREATE INDEX ix_records_commit_seq ON evidence.records (commit, seq) "
        "WHERE commit IS NOT NULL"
    )
    # One row per (control, record): `control` filters walk (control, seq) in order,
    # which a GIN index over an array cannot do.
    op.execute(
        """
        CREATE TABLE evidence.record_controls (
            control text NOT NULL,
            seq bigint NOT NULL,
            PRIMARY KEY (control, seq)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE evidence.tree_nodes (
            level smallint NOT NULL CHECK (level BETWEEN 0 AND 62),
            index bigint NOT NULL CHECK (index >= 0),
            hash bytea NOT NULL CHECK (length(hash) = 32),
            PRIMARY KEY (level, index)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE evidence.checkpoints (
            size bigint PRIMARY KEY CHECK (size > 0),
            origin text NOT NULL,
            root_hash bytea NOT NULL CHECK (length(root_hash) = 32),
            issued_at timestamptz NOT NULL,
            key_id text NOT NULL,
            signature bytea NOT NULL,
            note text NOT NULL
        )
        """
    )
    op.execute(
        """
        CREATE TABLE evidence.attachments (
            digest text PRIMARY KEY CHECK (digest ~ '^sha256:[0-9a-f]{64}$'),
            media_type text NOT NULL,
            size_bytes integer NOT NULL CHECK (size_bytes >= 0),
            content bytea NOT NULL,
            stored_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    for table in _APPEND_ONLY:
        op.execute(
            f"""
            CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON evidence.{table}
            FOR EACH ROW EXECUTE FUNCTION platform.refuse_change()
            """
        )
        op.execute(
            f"""
            CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON evidence.{table}
            FOR EACH STATEMENT EXECUTE FUNCTION platform.refuse_change()
            """
        )


def downgrade() -> None:
    op.execute("DROP SCHEMA evidence CASCADE")

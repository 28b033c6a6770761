"""ledger: append many journal entries to the hash chain in one call

Revision ID: ledger_0002
Revises: ledger_0001
"""

from alembic import op

revision = "ledger_0002"
down_revision = "ledger_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # hash = sha256(prev_hash || canonical bytes), over the exact JCS bytes the writer sends
    # (app/ledger/chain.py builds them, `verify` recomputes them). One call takes the chain
    # head lock once and appends a whole batch in order, so a batch of N transactions
    # costs one round trip at commit, like a single one.
    op.execute(
        """
        CREATE FUNCTION ledger.append_entries(
            entry_ids text[], transaction_ids text[], kinds text[],
            occurred timestamptz[], canonicals bytea[]
        ) RETURNS bigint
        LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp
        AS $$
        DECLARE
            head_seq bigint;
            head_hash text;
            next_hash text;
        BEGIN
            SELECT last_seq, last_hash INTO head_seq, head_hash
            FROM ledger.chain_head WHERE id = 1 FOR UPDATE;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'ledger.chain_head has no row';
            END IF;
            FOR i IN 1 .. coalesce(array_length(entry_ids, 1), 0) LOOP
                next_hash := encode(sha256(decode(head_hash, 'hex') || canonicals[i]), 'hex');
                head_seq := head_seq + 1;
                INSERT INTO ledger.journal_entries
                    (seq, id, transaction_id, kind, occurred_at, prev_hash, hash)
                VALUES (head_seq, entry_ids[i], transaction_ids[i], kinds[i], occurred[i],
                        head_hash, next_hash);
                head_hash := next_hash;
            END LOOP;
            UPDATE ledger.chain_head SET last_seq = head_seq, last_hash = head_hash
            WHERE id = 1;
            RETURN head_seq;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION ledger.append_entries(text[], text[], text[], timestamptz[], bytea[])"
    )

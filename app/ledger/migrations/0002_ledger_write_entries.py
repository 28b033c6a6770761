"""ledger: write journal entries (balances, postings, hash chain) in one call at commit

Revision ID: ledger_0002
Revises: ledger_0001
"""

from alembic import op

revision = "ledger_0002"
down_revision = "ledger_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The writer (app/ledger/journal.py) has locked the balance rows and computed the new
    # balances and running balances (app/ledger/domain.py). This call stores them and
    # appends the entries to the hash chain, in one round trip at commit:
    # hash = sha256(prev_hash || canonical bytes), over the exact JCS bytes the writer
    # sends (app/ledger/chain.py builds them, `verify` recomputes them). The chain head is
    # locked last, after the balances and postings, so it is held only for the append and
    # the COMMIT, and one call appends a whole batch in order.
    op.execute(
        """
        CREATE FUNCTION ledger.write_entries(
    b_ids text[], b_posted numeric[], b_debits numeric[], b_credits numeric[],
    updated timestamptz,
    p_entries text[], p_transactions text[], p_legs smallint[], p_accounts text[],
    p_directions text[], p_amounts bigint[], p_currencies text[], p_effects text[],
    p_after numeric[], p_occurred timestamptz[],
    e_ids text[], e_transactions text[], e_kinds text[], e_occurred timestamptz[],
    e_canonicals bytea[]
        ) RETURNS bigint
        LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp
        AS $$
        DECLARE
            touched bigint;
            head_seq bigint;
            head_hash text;
            next_hash text;
        BEGIN
            UPDATE ledger.balances b
            SET posted_minor = v.posted, pending_debits_minor = v.debits,
                pending_credits_minor = v.credits, updated_at = updated
            FROM unnest(b_ids, b_posted, b_debits, b_credits) AS v(id, posted, debits, credits)
            WHERE b.account_id = v.id;
            GET DIAGNOSTICS touched = ROW_COUNT;
            IF touched <> coalesce(array_length(b_ids, 1), 0) THEN
                RAISE EXCEPTION 'ledger.write_entries: % of % balance rows found',
                    touched, coalesce(array_length(b_ids, 1), 0);
            END IF;
            INSERT INTO ledger.postings
                (created_at, entry_id, transaction_id, leg, account_id, direction,
                 amount_minor, currency, effect, balance_after_minor)
            SELECT v.occurred, v.entry_id, v.transaction_id, v.leg, v.account_id,
                   v.direction, v.amount_minor, v.currency, v.effect, v.balance_after
            FROM unnest(p_occurred, p_entries, p_transactions, p_legs, p_accounts,
                        p_directions, p_amounts, p_currencies, p_effects, p_after)
                 WITH ORDINALITY
                 AS v(occurred, entry_id, transaction_id, leg, account_id, direction,
                      amount_minor, currency, effect, balance_after, n)
            ORDER BY v.n;
            SELECT last_seq, last_hash INTO head_seq, head_hash
            FROM ledger.chain_head WHERE id = 1 FOR UPDATE;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'ledger.write_entries: ledger.chain_head has no row';
            END IF;
            FOR i IN 1 .. coalesce(array_length(e_ids, 1), 0) LOOP
                next_hash := encode(sha256(decode(head_hash, 'hex') || e_canonicals[i]), 'hex');
                head_seq := head_seq + 1;
                INSERT INTO ledger.journal_entries
                    (seq, id, transaction_id, kind, occurred_at, prev_hash, hash)
                VALUES (head_seq, e_ids[i], e_transactions[i], e_kinds[i], e_occurred[i],
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
        """
        DROP FUNCTION ledger.write_entries(
            text[], numeric[], numeric[], numeric[], timestamptz, text[], text[], smallint[],
            text[], text[], bigint[], text[], text[], numeric[], timestamptz[], text[],
            text[], text[], timestamptz[], bytea[]
        )
        """
    )

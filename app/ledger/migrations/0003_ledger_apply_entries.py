"""ledger: the balance rules move into SQL, and a journal write becomes one call at commit

`ledger.apply_entries()` replaces `ledger.write_entries()`. It is now the ONE home of the
stateful money rules (issue 16); `app/ledger/domain.py` keeps the stateless ones (the
lifecycle, balancing per currency, which movements a command makes):

- `ledger.available()`: an account's available balance (API.md), for the rules here and
  for every read of an account;
- in `ledger.apply_entries()`: after the chain head row, the balance rows are locked in
  account-id order; an unknown account, a posting in another currency than its account,
  and an entry that lowers an account's available balance below -overdraft_limit_minor
  are refused (each with its own SQLSTATE, which `app/ledger/errors.py` turns into the
  API's error), then the new balances, the postings with their running balances and the
  chain append are written.

The writer sends it with the COMMIT, so the chain head lock and the account locks are held
only for this call and the commit, with no round trip in between. The chain head comes
first: it serializes every journal write until its COMMIT in any case, so taking it before
the balance rows means no writer ever waits for a balance row while holding it, and
writers on one hot account pay one lock hand-over each, not two.

Revision ID: ledger_0003
Revises: ledger_0002
"""

import importlib

from alembic import op

revision = "ledger_0003"
down_revision = "ledger_0002"
branch_labels = None
depends_on = None

_WRITE_ENTRIES_ARGS = """
    text[], numeric[], numeric[], numeric[], timestamptz, text[], text[], smallint[],
    text[], text[], bigint[], text[], text[], numeric[], timestamptz[], text[],
    text[], text[], timestamptz[], bytea[]
"""


# ledger_0004 restores this version when it is downgraded.
CREATE_APPLY_ENTRIES = """
        CREATE FUNCTION ledger.apply_entries(
            p_items integer[], p_entries text[], p_transactions text[], p_legs smallint[],
            p_accounts text[], p_directions text[], p_amounts bigint[],
            p_currencies text[], p_effects text[],
            e_ids text[], e_transactions text[], e_kinds text[], e_part_counts integer[],
            e_parts bytea[]
        ) RETURNS bigint
        LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp
        AS $$
        DECLARE
            ids text[] := '{}';
            currencies text[] := '{}';
            normals text[] := '{}';
            limits numeric[] := '{}';
            posted numeric[] := '{}';
            debits numeric[] := '{}';
            credits numeric[] := '{}';
            slots jsonb;
            before numeric[];
            item_slots integer[] := '{}';
            item integer;
            after numeric[] := '{}';
            n integer := coalesce(array_length(p_accounts, 1), 0);
            k integer;
            delta numeric;
            now_available numeric;
            missing text;
            acct record;
            occurred timestamptz := clock_timestamp();
            stamp bytea;
            canonical bytea;
            part integer := 1;
            head_seq bigint;
            head_hash text;
            next_hash text;
        BEGIN
            -- The chain head first: it serializes every journal write of the ledger
            -- anyway (held until the COMMIT), so whoever holds it never waits for a
            -- balance row, and a hot account costs no second lock hand-over.
            SELECT last_seq, last_hash INTO head_seq, head_hash
            FROM ledger.chain_head WHERE id = 1 FOR UPDATE;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'ledger.apply_entries: ledger.chain_head has no row';
            END IF;
            FOR acct IN
                SELECT a.id, a.currency, a.normal_balance, a.overdraft_limit_minor,
                       b.posted_minor, b.pending_debits_minor, b.pending_credits_minor,
                       b.updated_at
                FROM ledger.balances b JOIN ledger.accounts a ON a.id = b.account_id
                WHERE b.account_id = ANY(p_accounts)
                ORDER BY b.account_id
                FOR UPDATE OF b
            LOOP
                occurred := greatest(occurred, acct.updated_at);
                ids := ids || acct.id;
                currencies := currencies || acct.currency;
                normals := normals || acct.normal_balance;
                limits := limits || acct.overdraft_limit_minor::numeric;
                posted := posted || acct.posted_minor;
                debits := debits || acct.pending_debits_minor;
                credits := credits || acct.pending_credits_minor;
            END LOOP;
            occurred := greatest(occurred, clock_timestamp());
            stamp := convert_to(
                to_char(occurred AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), 'UTF8');
            SELECT coalesce(jsonb_object_agg(t.id, t.n), '{}') INTO slots
            FROM unnest(ids) WITH ORDINALITY AS t(id, n);
            SELECT u.account, p_items[u.n] INTO missing, item
            FROM unnest(p_accounts) WITH ORDINALITY AS u(account, n)
            WHERE NOT slots ? u.account
            ORDER BY u.account, u.n
            LIMIT 1;
            IF missing IS NOT NULL THEN
                RAISE EXCEPTION 'no account %', missing USING ERRCODE = 'MPLA1',
                    DETAIL = json_build_object('item', item, 'account_id', missing)::text;
            END IF;
            before := array_fill(NULL::numeric, ARRAY[cardinality(ids)]);
            item := NULL;
            FOR i IN 1 .. n + 1 LOOP
                IF i > n OR p_items[i] IS DISTINCT FROM item THEN
                    -- The entry that ends here: refuse it if it lowered an account's
                    -- available balance and left it below -overdraft_limit_minor.
                    FOREACH k IN ARRAY item_slots LOOP
                        now_available := ledger.available(
                            normals[k], posted[k], debits[k], credits[k]);
                        IF limits[k] IS NOT NULL AND now_available < before[k]
                           AND now_available < -limits[k] THEN
                            RAISE EXCEPTION 'account % would fall below its overdraft limit',
                                ids[k] USING ERRCODE = 'MPLF1',
                                DETAIL = json_build_object('item', item,
                                                           'account_id', ids[k])::text;
                        END IF;
                    END LOOP;
                    EXIT WHEN i > n;
                    item := p_items[i];
                    item_slots := '{}';
                END IF;
                k := (slots ->> p_accounts[i])::integer;
                IF p_currencies[i] <> currencies[k] THEN
                    RAISE EXCEPTION 'posting % is in % but account % is in %',
                        p_legs[i], p_currencies[i], ids[k], currencies[k]
                        USING ERRCODE = 'MPLC1',
                        DETAIL = json_build_object('item', item, 'leg', p_legs[i])::text;
                END IF;
                IF NOT k = ANY(item_slots) THEN
                    item_slots := item_slots || k;
                    before[k] := ledger.available(normals[k], posted[k], debits[k], credits[k]);
                END IF;
                IF p_effects[i] = 'posted' THEN
                    posted[k] := posted[k] + CASE WHEN p_directions[i] = normals[k]
                                                  THEN p_amounts[i] ELSE -p_amounts[i] END;
                ELSE
                    delta := CASE WHEN p_effects[i] = 'hold' THEN p_amounts[i]
                                  ELSE -p_amounts[i] END;
                    IF p_directions[i] = 'debit' THEN
                        debits[k] := debits[k] + delta;
                    ELSE
                        credits[k] := credits[k] + delta;
                    END IF;
                END IF;
                after := after || posted[k];
            END LOOP;
            UPDATE ledger.balances b
            SET posted_minor = v.posted, pending_debits_minor = v.debits,
                pending_credits_minor = v.credits, updated_at = occurred
            FROM unnest(ids, posted, debits, credits) AS v(id, posted, debits, credits)
            WHERE b.account_id = v.id;
            INSERT INTO ledger.postings
                (created_at, entry_id, transaction_id, leg, account_id, direction,
                 amount_minor, currency, effect, balance_after_minor)
            SELECT occurred, v.entry_id, v.transaction_id, v.leg, v.account_id,
                   v.direction, v.amount_minor, v.currency, v.effect, v.balance_after
            FROM unnest(p_entries, p_transactions, p_legs, p_accounts, p_directions,
                        p_amounts, p_currencies, p_effects, after)
                 WITH ORDINALITY
                 AS v(entry_id, transaction_id, leg, account_id, direction, amount_minor,
                      currency, effect, balance_after, n)
            ORDER BY v.n;
            FOR i IN 1 .. coalesce(array_length(e_ids, 1), 0) LOOP
                canonical := e_parts[part];
                FOR j IN 1 .. e_part_counts[i] - 1 LOOP
                    canonical := canonical || stamp || e_parts[part + j];
                END LOOP;
                part := part + e_part_counts[i];
                next_hash := encode(sha256(decode(head_hash, 'hex') || canonical), 'hex');
                head_seq := head_seq + 1;
                INSERT INTO ledger.journal_entries
                    (seq, id, transaction_id, kind, occurred_at, prev_hash, hash)
                VALUES (head_seq, e_ids[i], e_transactions[i], e_kinds[i], occurred,
                        head_hash, next_hash);
                head_hash := next_hash;
            END LOOP;
            UPDATE ledger.chain_head SET last_seq = head_seq, last_hash = head_hash
            WHERE id = 1;
            RETURN head_seq;
        END
        $$
        """


def upgrade() -> None:
    op.execute(f"DROP FUNCTION ledger.write_entries({_WRITE_ENTRIES_ARGS})")
    op.execute(
        """
        CREATE FUNCTION ledger.available(
            normal_balance text, posted numeric, pending_debits numeric,
            pending_credits numeric
        ) RETURNS numeric
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$
            -- Posted minus the pending amounts that would reduce the balance.
            SELECT posted - CASE WHEN normal_balance = 'credit' THEN pending_debits
                                 ELSE pending_credits END
        $$
        """
    )
    # Postings arrive in order with the index of the entry (`p_items`) each belongs to;
    # entries are checked one after the other, each against the balances the previous
    # ones left (a batch is checked exactly like its items sent one by one).
    # The entries' time is read here, under the balance locks (and never before an
    # account's last change): postings of one account are then time-ordered like their
    # ids, so an as_of sum always equals some running balance. The writer sends each
    # entry's canonical bytes cut where that time goes (`chain.canonical_parts`, `e_parts`
    # with `e_part_counts` parts per entry); they are joined with the time rendered as
    # `chain.format_time` does, then hashed: hash = sha256(prev_hash || canonical).
    op.execute(CREATE_APPLY_ENTRIES)


def downgrade() -> None:
    op.execute(
        """
        DROP FUNCTION ledger.apply_entries(
            integer[], text[], text[], smallint[], text[], text[], bigint[], text[], text[],
            text[], text[], text[], integer[], bytea[]
        )
        """
    )
    op.execute("DROP FUNCTION ledger.available(text, numeric, numeric, numeric)")
    # Back to ledger_0002's state: its function again.
    importlib.import_module("app.ledger.migrations.0002_ledger_write_entries").upgrade()

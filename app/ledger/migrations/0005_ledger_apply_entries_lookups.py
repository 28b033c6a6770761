"""ledger: `ledger.apply_entries()` is planned once per session, and reaches rows by key

The same function, with the same input, rules, refusals (SQLSTATEs MPLA1, MPLC1, MPLF1 with
the refused item's index), locking order (chain head, then balance rows in account-id
order), chain hashing and result as ledger_0004. It costs PostgreSQL less CPU (issue 16):

- ledger_0004's statements were planned again on every call. PL/pgSQL statements go
  through the plan cache, which kept choosing custom plans: with the account array's
  length known, a custom plan (index scans) looks far cheaper than the generic one,
  which guesses ten elements and so scanned whole tables, filtering every row against
  every account of the call. Planning the balance-row query alone was about a tenth of
  the backend's CPU per transfer. Now the function runs with
  `plan_cache_mode = force_generic_plan`, and with sequential scans, hash and merge
  joins disabled, so its generic plans are key lookups whatever the table statistics or
  sizes say, planned once per session;
- the balance rows are locked by one probe per account, walking the call's accounts in
  id order (a nested loop over the sorted array into a LATERAL subquery that locks the
  row it finds), so the lock order does not depend on a plan either;
- each posting carries the slot of its account (its rank among the call's accounts in
  id order) from the statement that reads the postings, instead of a JSON object of
  slots and another query for unknown accounts;
- the journal entries are hashed in a loop of plain expressions and inserted by one
  statement, not one INSERT per entry.

Revision ID: ledger_0005
Revises: ledger_0004
"""

import importlib

from alembic import op

revision = "ledger_0005"
down_revision = "ledger_0004"
branch_labels = None
depends_on = None

# A later migration that replaces this version restores it on its downgrade.
CREATE_APPLY_ENTRIES = """
        CREATE OR REPLACE FUNCTION ledger.apply_entries(p_batch jsonb) RETURNS bigint
        LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp
        SET enable_seqscan = off
        SET enable_hashjoin = off
        SET enable_mergejoin = off
        SET plan_cache_mode = force_generic_plan
        AS $$
        DECLARE
            p_items integer[];
            p_entries text[];
            p_transactions text[];
            p_legs smallint[];
            p_accounts text[];
            p_directions text[];
            p_amounts bigint[];
            p_currencies text[];
            p_effects text[];
            p_slots integer[];
            e_ids text[];
            e_transactions text[];
            e_kinds text[];
            e_parts text[];
            e_prev text[] := '{}';
            e_hashes text[] := '{}';
            ids text[];
            currencies text[];
            normals text[];
            limits numeric[];
            posted numeric[];
            debits numeric[];
            credits numeric[];
            latest timestamptz;
            before numeric[];
            item_slots integer[] := '{}';
            item integer;
            after numeric[] := '{}';
            n integer;
            k integer;
            delta numeric;
            now_available numeric;
            missing text;
            occurred timestamptz := clock_timestamp();
            stamp text;
            running bytea;
            head_seq bigint;
            head_hash text;
        BEGIN
            -- The postings as columns, in order, each with its account's slot: the rank of
            -- the account among the call's accounts in id order (`ids`), the order in which
            -- their balance rows are locked.
            SELECT p.items, p.entries, p.transactions, p.legs, p.accounts, p.directions,
                   p.amounts, p.currencies, p.effects, p.slots, p.ids,
                   e.ids, e.transactions, e.kinds, e.parts
            INTO p_items, p_entries, p_transactions, p_legs, p_accounts, p_directions,
                 p_amounts, p_currencies, p_effects, p_slots, ids,
                 e_ids, e_transactions, e_kinds, e_parts
            FROM (
                SELECT array_agg((r ->> 0)::integer ORDER BY o) AS items,
                       array_agg(r ->> 1 ORDER BY o) AS entries,
                       array_agg(r ->> 2 ORDER BY o) AS transactions,
                       array_agg((r ->> 3)::smallint ORDER BY o) AS legs,
                       array_agg(account ORDER BY o) AS accounts,
                       array_agg(r ->> 5 ORDER BY o) AS directions,
                       array_agg((r ->> 6)::bigint ORDER BY o) AS amounts,
                       array_agg(r ->> 7 ORDER BY o) AS currencies,
                       array_agg(r ->> 8 ORDER BY o) AS effects,
                       array_agg(slot ORDER BY o) AS slots,
                       array_agg(DISTINCT account ORDER BY account) AS ids
                FROM (
                    SELECT r, o, r ->> 4 AS account,
                           dense_rank() OVER (ORDER BY r ->> 4)::integer AS slot
                    FROM jsonb_array_elements(p_batch -> 'postings') WITH ORDINALITY AS t(r, o)
                ) AS posting
            ) AS p, (
                -- An entry's canonical parts as one hex string, cut by commas where the
                -- entry's time goes (no hex digit is a comma).
                SELECT array_agg(x ->> 0 ORDER BY o) AS ids,
                       array_agg(x ->> 1 ORDER BY o) AS transactions,
                       array_agg(x ->> 2 ORDER BY o) AS kinds,
                       array_agg(array_to_string(
                           ARRAY(SELECT jsonb_array_elements_text(x -> 3)), ',') ORDER BY o)
                           AS parts
                FROM jsonb_array_elements(p_batch -> 'entries') WITH ORDINALITY AS t(x, o)
            ) AS e;
            n := coalesce(cardinality(p_accounts), 0);
            -- The chain head first: it serializes every journal write of the ledger
            -- anyway (held until the COMMIT), so whoever holds it never waits for a
            -- balance row, and a hot account costs no second lock hand-over.
            SELECT last_seq, last_hash INTO head_seq, head_hash
            FROM ledger.chain_head WHERE id = 1 FOR UPDATE;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'ledger.apply_entries: ledger.chain_head has no row';
            END IF;
            -- Then the balance rows, one key probe per account in id order (the nested
            -- loop walks `ids` in order, and each probe locks its row as it finds it).
            -- An account without a balance row or an account row comes back as NULLs.
            SELECT array_agg(a.currency ORDER BY u.n), array_agg(a.normal_balance ORDER BY u.n),
                   array_agg(a.overdraft_limit_minor::numeric ORDER BY u.n),
                   array_agg(a.posted_minor ORDER BY u.n),
                   array_agg(a.pending_debits_minor ORDER BY u.n),
                   array_agg(a.pending_credits_minor ORDER BY u.n),
                   max(a.updated_at), min(u.id) FILTER (WHERE a.id IS NULL)
            INTO currencies, normals, limits, posted, debits, credits, latest, missing
            FROM unnest(ids) WITH ORDINALITY AS u(id, n)
            LEFT JOIN LATERAL (
                SELECT aa.id, aa.currency, aa.normal_balance, aa.overdraft_limit_minor,
                       b.posted_minor, b.pending_debits_minor, b.pending_credits_minor,
                       b.updated_at
                FROM ledger.balances b JOIN ledger.accounts aa ON aa.id = b.account_id
                WHERE b.account_id = u.id
                FOR UPDATE OF b
            ) AS a ON true;
            IF missing IS NOT NULL THEN
                RAISE EXCEPTION 'no account %', missing USING ERRCODE = 'MPLA1',
                    DETAIL = json_build_object(
                        'item', p_items[array_position(p_accounts, missing)],
                        'account_id', missing)::text;
            END IF;
            occurred := greatest(occurred, latest, clock_timestamp());
            stamp := encode(convert_to(
                to_char(occurred AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), 'UTF8'),
                'hex');
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
                k := p_slots[i];
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
            -- hash = sha256(prev_hash || canonical), the canonical bytes being the parts
            -- joined with the entries' time.
            running := decode(head_hash, 'hex');
            FOR i IN 1 .. coalesce(cardinality(e_ids), 0) LOOP
                e_prev[i] := encode(running, 'hex');
                running := sha256(running || decode(replace(e_parts[i], ',', stamp), 'hex'));
                e_hashes[i] := encode(running, 'hex');
            END LOOP;
            INSERT INTO ledger.journal_entries
                (seq, id, transaction_id, kind, occurred_at, prev_hash, hash)
            SELECT head_seq + v.n, v.id, v.transaction_id, v.kind, occurred, v.prev, v.hash
            FROM unnest(e_ids, e_transactions, e_kinds, e_prev, e_hashes) WITH ORDINALITY
                 AS v(id, transaction_id, kind, prev, hash, n)
            ORDER BY v.n;
            head_seq := head_seq + coalesce(cardinality(e_ids), 0);
            UPDATE ledger.chain_head
            SET last_seq = head_seq,
                last_hash = coalesce(e_hashes[cardinality(e_hashes)], head_hash)
            WHERE id = 1;
            RETURN head_seq;
        END
        $$
        """


def upgrade() -> None:
    op.execute(CREATE_APPLY_ENTRIES)


def downgrade() -> None:
    # Back to ledger_0004's function (and its settings: it had only the search path).
    op.execute("DROP FUNCTION ledger.apply_entries(jsonb)")
    op.execute(
        importlib.import_module(
            "app.ledger.migrations.0004_ledger_apply_entries_json"
        ).CREATE_APPLY_ENTRIES
    )

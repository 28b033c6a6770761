"""ledger: `ledger.apply_entries()` takes its batch as one jsonb document

The same function, the same rules and the same refusals (SQLSTATEs MPLA1, MPLC1, MPLF1
with the refused item's index) as ledger_0003; only its input changes. Fourteen array
parameters cost the writer about 50 µs of CPU per call to encode (psycopg's array
dumping), against a few for one JSON text (issue 16). The document:

- `postings`: one array per posting, in order:
  [item, entry_id, transaction_id, leg, account_id, direction, amount_minor, currency,
  effect], where `item` is the index of the entry it belongs to;
- `entries`: one array per entry, in order: [id, transaction_id, kind, parts], where
  `parts` are the hex of the entry's canonical bytes cut where its time goes
  (`chain.canonical_parts`), joined here with that time and hashed as before.

Revision ID: ledger_0004
Revises: ledger_0003
"""

import importlib

from alembic import op

revision = "ledger_0004"
down_revision = "ledger_0003"
branch_labels = None
depends_on = None

_ARRAYS_ARGS = """
    integer[], text[], text[], smallint[], text[], text[], bigint[], text[], text[],
    text[], text[], text[], integer[], bytea[]
"""


# ledger_0005 restores this version when it is downgraded.
CREATE_APPLY_ENTRIES = """
        CREATE FUNCTION ledger.apply_entries(p_batch jsonb) RETURNS bigint
        LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp
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
            entry jsonb;
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
            n integer;
            k integer;
            delta numeric;
            now_available numeric;
            missing text;
            acct record;
            occurred timestamptz := clock_timestamp();
            stamp bytea;
            canonical bytea;
            head_seq bigint;
            head_hash text;
            next_hash text;
        BEGIN
            -- The postings as columns, in order (one row of `postings` per posting).
            SELECT array_agg((r ->> 0)::integer ORDER BY o), array_agg(r ->> 1 ORDER BY o),
                   array_agg(r ->> 2 ORDER BY o), array_agg((r ->> 3)::smallint ORDER BY o),
                   array_agg(r ->> 4 ORDER BY o), array_agg(r ->> 5 ORDER BY o),
                   array_agg((r ->> 6)::bigint ORDER BY o), array_agg(r ->> 7 ORDER BY o),
                   array_agg(r ->> 8 ORDER BY o)
            INTO p_items, p_entries, p_transactions, p_legs, p_accounts, p_directions,
                 p_amounts, p_currencies, p_effects
            FROM jsonb_array_elements(p_batch -> 'postings') WITH ORDINALITY AS t(r, o);
            n := coalesce(array_length(p_accounts, 1), 0);
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
            FOR i IN 0 .. jsonb_array_length(p_batch -> 'entries') - 1 LOOP
                entry := p_batch -> 'entries' -> i;
                canonical := decode(entry -> 3 ->> 0, 'hex');
                FOR j IN 1 .. jsonb_array_length(entry -> 3) - 1 LOOP
                    canonical := canonical || stamp || decode(entry -> 3 ->> j, 'hex');
                END LOOP;
                next_hash := encode(sha256(decode(head_hash, 'hex') || canonical), 'hex');
                head_seq := head_seq + 1;
                INSERT INTO ledger.journal_entries
                    (seq, id, transaction_id, kind, occurred_at, prev_hash, hash)
                VALUES (head_seq, entry ->> 0, entry ->> 1, entry ->> 2, occurred,
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
    op.execute(f"DROP FUNCTION ledger.apply_entries({_ARRAYS_ARGS})")
    op.execute(CREATE_APPLY_ENTRIES)


def downgrade() -> None:
    op.execute("DROP FUNCTION ledger.apply_entries(jsonb)")
    # Back to ledger_0003's function.
    op.execute(
        importlib.import_module(
            "app.ledger.migrations.0003_ledger_apply_entries"
        ).CREATE_APPLY_ENTRIES
    )

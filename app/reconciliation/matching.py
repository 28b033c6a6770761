"""The matching rules of `domain`, in SQL over a run's staged data.

A run's million lines and million records are joined in PostgreSQL; Python never sees
them one by one (it was the slow side: about 30 µs a line, parse included). The
statements read the view `settlement_lines` (the provider's file, staged by its adapter)
and the table `settled_money` (our records, staged by payments), write every outcome
that is not a match into `recon_outcomes`, and return how many outcomes each class has.

How it stays cheap: the usual line names one reference that one record settles. One hash
aggregate over the lines and the records together (`_PAIRED`) pairs them by kind and
reference, and classifies such pairs on the spot; matched ones are only counted. The
other groups (several lines, where copies may hide; several records; a line naming
several references or none) are left as `several` placeholders, and a second statement
takes only those apart, from their own lines and records. Each rule is written once
(the templates below); the numbers refer to `domain`'s docstring.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.payments import api as payments_api
from app.providers import api as providers_api
from app.reconciliation import domain

OUTCOMES = "recon_outcomes"
SEVERAL = "several"  # a placeholder outcome: a group the first statement leaves
_LINES = providers_api.SETTLEMENT_LINES
_SETTLED = payments_api.SETTLED_TABLE

_OUTCOMES_TABLE = f"""
CREATE TEMPORARY TABLE {OUTCOMES} (
  line_class text NOT NULL, line_numbers integer[] NOT NULL, refs text[] NOT NULL,
  gross_minor bigint, internal_minor bigint, fee_minor bigint NOT NULL,
  currencies text[] NOT NULL, record_kind text, at timestamptz
) ON COMMIT DROP
"""

# Rules 3 to 5, for a group of lines: their gross and currencies, and the number, total
# and currencies of the records they name.
_GROUP_CLASS = """CASE WHEN {records} = 0 THEN 'missing_internally'
  WHEN least({line_lo}, {record_lo}) <> greatest({line_hi}, {record_hi})
    THEN 'currency_mismatch'
  WHEN abs({gross} - {internal}) > CAST(:tolerance_minor AS bigint) THEN 'amount_mismatch'
  ELSE 'matched' END"""
# Rule 6, for one of our records no line names.
_UNNAMED_CLASS = """CASE
  WHEN CAST(:day AS date) - ({at} AT TIME ZONE 'UTC')::date >= CAST(:tolerance_days AS integer)
    THEN 'missing_at_provider' ELSE 'pending' END"""
# What an outcome lists as its currencies: those of its lines and records, sorted, once
# each (each side gives its lowest and highest: all of them unless one side mixes three).
_CURRENCIES = """ARRAY(SELECT DISTINCT c FROM unnest(ARRAY[{}]) AS c
  WHERE c IS NOT NULL ORDER BY c)"""
# Counts the outcomes per class and stores those that are not matches (unless asked):
# gathered per class and unnested into the table, so a million matches are kept nowhere.
_COUNT_AND_STORE = f"""
, counted AS (
  SELECT line_class, count(*) AS outcomes,
         array_agg(ROW(line_class, line_numbers, refs, gross_minor, internal_minor, fee_minor,
                       currencies, record_kind, at)::{OUTCOMES})
           FILTER (WHERE line_class <> 'matched'
                   OR line_class = 'matched' AND CAST(:keep_matched AS boolean)) AS found
    FROM outcome GROUP BY line_class  -- (no class: settles nothing; not filtered out
                                      -- before, which would classify each group twice)
), stored AS (
  INSERT INTO {OUTCOMES} SELECT found.* FROM counted, unnest(counted.found) AS found
)
SELECT line_class, outcomes FROM counted WHERE line_class IS NOT NULL
"""  # noqa: S608 - fixed table name

_PAIRED = f"""
WITH sides AS (
  -- Rule 2: a line settles our records of its own kind and reference. The lines naming
  -- one reference (or none) by it; every reference of a line naming several too, its
  -- line number negated to mark it (planned away when no line splits: `refs` is then
  -- NULL as a constant).
  SELECT kind, ref, line_number, gross_minor, fee_minor, currency AS line_currency,
         NULL::bigint AS amount_minor, NULL::text AS record_currency, NULL::timestamptz AS at
    FROM {_LINES} WHERE refs IS NULL
  UNION ALL
  SELECT l.kind, n.reference, -l.line_number, NULL, NULL, NULL, NULL, NULL, NULL
    FROM {_LINES} l, unnest(l.refs) AS n (reference) WHERE l.refs IS NOT NULL
  UNION ALL
  SELECT kind, reference, NULL, NULL, NULL, NULL, amount_minor, currency, at
    FROM {_SETTLED}
), classified AS (
  -- One pass over both sides, keeping what a group of one line and at most one record
  -- needs (min() of one value is the value, and costs far less than sum()), and
  -- classifying it on the spot.
  SELECT CASE WHEN count(line_number) > 1 OR count(at) > 1 OR min(line_number) < 0
                THEN '{SEVERAL}'
              WHEN count(line_number) = 0 THEN {_UNNAMED_CLASS.format(at="min(at)")}
              -- Fees and adjustments on their own settle nothing of ours.
              WHEN kind <> ALL(CAST(:settling AS text[])) THEN NULL
              ELSE {
    _GROUP_CLASS.format(
        records="count(at)",
        line_lo="min(line_currency)",
        line_hi="min(line_currency)",
        record_lo="min(record_currency)",
        record_hi="min(record_currency)",
        gross="min(gross_minor)",
        internal="min(amount_minor)",
    )
} END AS line_class,
         kind, ref, count(line_number) AS lines, min(line_number) AS line_number,
         min(gross_minor) AS gross_minor, min(fee_minor) AS fee_minor,
         min(line_currency) AS line_currency, count(at) AS records,
         min(amount_minor) AS internal_minor, min(record_currency) AS record_currency,
         min(at) AS at
    FROM sides GROUP BY kind, ref
), outcome AS (
  -- Only the outcomes kept (not matched) build their arrays: counted's FILTER comes first.
  SELECT line_class,
         CASE WHEN lines = 1 THEN ARRAY[line_number] ELSE '{{}}' END AS line_numbers,
         ARRAY[ref] AS refs, CASE WHEN lines = 1 THEN gross_minor END AS gross_minor,
         CASE WHEN records = 1 THEN internal_minor END AS internal_minor,
         coalesce(fee_minor, 0) AS fee_minor,
         {_CURRENCIES.format("line_currency, record_currency")} AS currencies,
         kind AS record_kind, CASE WHEN lines = 0 THEN at END AS at
    FROM classified
)
{_COUNT_AND_STORE}"""  # noqa: S608 - fixed table names

_SEVERAL = f"""
WITH keys AS (
  SELECT record_kind AS kind, refs[1] AS ref FROM {OUTCOMES} WHERE line_class = '{SEVERAL}'
), several AS (
  -- Rule 1: a line identical to an earlier one (all but its number) is a copy.
  SELECT l.*, row_number() OVER (PARTITION BY l.kind, l.ref, l.refs, l.op, l.gross_minor,
                                   l.fee_minor, l.currency ORDER BY l.line_number) AS copy
    FROM {_LINES} l
   WHERE l.refs IS NOT NULL OR (l.kind, l.ref) IN (SELECT kind, ref FROM keys)
), groups AS (
  -- Rule 2: the lines of one kind naming the same references, copies left out.
  SELECT kind, CASE WHEN ref <> '' THEN ARRAY[ref] ELSE coalesce(refs, '{{}}') END AS refs,
         array_agg(line_number ORDER BY line_number) AS line_numbers,
         sum(gross_minor)::bigint AS gross_minor, sum(fee_minor)::bigint AS fee_minor,
         min(currency) AS line_lo, max(currency) AS line_hi
    FROM several WHERE copy = 1 GROUP BY kind, ref, refs
), named AS (
  SELECT g.kind, g.refs, n.reference FROM groups g, unnest(g.refs) AS n (reference)
), known AS (
  SELECT n.kind, n.refs, count(*) AS records, sum(s.amount_minor)::bigint AS internal_minor,
         min(s.currency) AS record_lo, max(s.currency) AS record_hi
    FROM named n JOIN {_SETTLED} s ON s.kind = n.kind AND s.reference = n.reference
   GROUP BY n.kind, n.refs
), outcome AS (
  SELECT {
    _GROUP_CLASS.format(
        records="coalesce(k.records, 0)",
        line_lo="g.line_lo",
        line_hi="g.line_hi",
        record_lo="k.record_lo",
        record_hi="k.record_hi",
        gross="g.gross_minor",
        internal="k.internal_minor",
    )
} AS line_class,
         g.line_numbers, g.refs, g.gross_minor, k.internal_minor, g.fee_minor,
         {_CURRENCIES.format("g.line_lo, g.line_hi, k.record_lo, k.record_hi")} AS currencies,
         NULL AS record_kind, NULL::timestamptz AS at
    FROM groups g LEFT JOIN known k ON k.kind = g.kind AND k.refs = g.refs
   WHERE g.kind = ANY(CAST(:settling AS text[]))
  UNION ALL
  SELECT 'duplicate', ARRAY[line_number],
         CASE WHEN ref <> '' THEN ARRAY[ref] ELSE coalesce(refs, '{{}}') END, gross_minor,
         NULL, fee_minor, ARRAY[currency], NULL, NULL
    FROM several WHERE copy > 1
  UNION ALL
  -- Our records of these keys that no group names, one by one.
  SELECT {_UNNAMED_CLASS.format(at="s.at")}, '{{}}', ARRAY[s.reference], NULL, s.amount_minor,
         0, ARRAY[s.currency], s.kind, s.at
    FROM {_SETTLED} s
   WHERE (s.kind, s.reference) IN (SELECT kind, ref FROM keys)
     AND (s.kind, s.reference) NOT IN (SELECT kind, reference FROM named)
)
{_COUNT_AND_STORE}"""  # noqa: S608 - fixed table names


async def classify(
    session: AsyncSession,
    settlement_date: date,
    tolerances: domain.Tolerances,
    *,
    keep_matched: bool = False,
) -> Counter[str]:
    """Classify the staged lines and records (staging.stage_lines, stage_records; those
    also give the transaction its memory): the outcomes that are not matches (all of them
    with `keep_matched`, for a small file) land in `recon_outcomes`; returns the count per
    class (`pending` included: records left for a later file)."""
    await session.execute(text(f"DROP TABLE IF EXISTS pg_temp.{OUTCOMES}"))
    await session.execute(text(_OUTCOMES_TABLE))
    params: dict[str, Any] = {
        "day": settlement_date,
        "tolerance_minor": tolerances.amount_minor,
        "tolerance_days": tolerances.days,
        "settling": sorted(domain.SETTLING_KINDS),
        "keep_matched": keep_matched,
    }
    found: Counter[str] = Counter()
    for line_class, count in await session.execute(text(_PAIRED), params):
        found[line_class] += int(count)
    if found.pop(SEVERAL, 0):
        for line_class, count in await session.execute(text(_SEVERAL), params):
            found[line_class] += int(count)
        await session.execute(
            text(f"DELETE FROM {OUTCOMES} WHERE line_class = :several"),  # noqa: S608
            {"several": SEVERAL},
        )
    return found

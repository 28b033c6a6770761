"""Reconciliation benchmark: N settlement lines against the matching payments, vs one SQL join.

    XDG_RUNTIME_DIR=/tmp .venv/bin/python loadtests/bench_recon.py [--lines 1000000]

(`RECON_WORK_MEM_MB` sets the run's work_mem, as for the API and the worker.)

Starts its own PostgreSQL (free port, temp dir), migrates it, and bulk-loads N captured
payments at `acme` with their capture steps (generate_series; set-up is not measured).
It writes acme's settlement CSV for the day with every line matching, except 0.1 % with a
planted amount difference, and then measures, in the same run:

1. ours: `runs.reconcile` as the API and the worker run it (the file COPYed through the
   provider's adapter, whose table checks every line, the day's settled records staged by
   payments, the matching rules applied in SQL, the run and exception rows, the pending
   records, the audit record), in one transaction;
2. the baseline: COPY the same file into a temporary table and one SQL join against the
   same payments and steps, counting matched lines and amount mismatches.

Prints wall time and lines/s of each, their ratio, and the process's peak RSS after (1).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import resource
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

from app.entrypoints.devstack import Ports, Stack
from app.platform.db import create_engine, libpq_url, session_factory
from app.platform.migrate import upgrade
from app.reconciliation import domain, runs

PLANT_EVERY = 1000


def load(url: str, count: int, day: date) -> None:
    at = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        connection.execute(
            """
            INSERT INTO payments.payments (id, owner, request_key, customer_id,
                merchant_account_id, amount_minor, currency, capture_mode, token, status,
                provider, provider_ref, hold_transaction_id, captured_minor)
            SELECT 'pay_' || i, 'cli_bench', 'k' || i, 'cus_bench', 'acc_bench',
                   1000 + i %% 5000, 'USD', 'automatic', 'tok', 'captured', 'acme',
                   'ch_' || i, 'txn_' || i, 1000 + i %% 5000
              FROM generate_series(1, %s) AS i
            """,
            (count,),
        )
        connection.execute(
            """
            INSERT INTO payments.steps (saga_id, name, status, provider, provider_ref,
                amount_minor, finished_at)
            SELECT 'pay_' || i, 'capture', 'succeeded', 'acme', 'op_' || i,
                   1000 + i %% 5000, %s
              FROM generate_series(1, %s) AS i
            """,
            (at, count),
        )
        connection.execute("ANALYZE payments.payments")
        connection.execute("ANALYZE payments.steps")


def settlement_csv(count: int, day: date) -> bytes:
    # Written as bytes in blocks, so the file is the only large thing this process holds
    # before the run (the peak RSS printed is then the run's, not the generator's).
    out = io.BytesIO()
    out.write(b"settlement_date,line,type,charge_ids,operation_id,amount,fee,net,currency\n")
    text_day = day.isoformat()
    for start in range(1, count + 1, 10_000):
        block = []
        for i in range(start, min(start + 10_000, count + 1)):
            amount = 1000 + i % 5000 + (1 if i % PLANT_EVERY == 0 else 0)
            block.append(f"{text_day},{i},CAPTURE,ch_{i},op_{i},{amount},0,{amount},USD\n")
        out.write("".join(block).encode())
    return out.getvalue()


async def ours(url: str, data: bytes, day: date) -> tuple[float, runs.Run]:
    engine = create_engine(url, pool_size=2)
    sessions = session_factory(engine)
    try:
        started = time.perf_counter()
        async with sessions() as session, session.begin():
            run, _ = await runs.reconcile(
                session, "acme", day, data, source="uploaded", started_by="bench",
                tolerances=domain.Tolerances(amount_minor=0, days=0),
                work_mem_mb=runs.work_mem_mb_from_env(),
            )  # fmt: skip
        return time.perf_counter() - started, run
    finally:
        await engine.dispose()


def baseline(url: str, data: bytes) -> tuple[float, int, int]:
    started = time.perf_counter()
    with psycopg.connect(libpq_url(url)) as connection:
        connection.execute(
            "CREATE TEMP TABLE lines (settlement_date date, line int, type text,"
            " charge_ids text, operation_id text, amount bigint, fee bigint, net bigint,"
            " currency text) ON COMMIT DROP"
        )
        with connection.cursor().copy("COPY lines FROM STDIN WITH (FORMAT csv, HEADER)") as copy:
            copy.write(data)
        row = connection.execute(
            """
            SELECT count(*) FILTER (WHERE l.amount = s.amount_minor AND l.currency = p.currency),
                   count(*) FILTER (WHERE l.amount <> s.amount_minor)
              FROM lines l
              JOIN payments.payments p ON p.provider = 'acme' AND p.provider_ref = l.charge_ids
              JOIN payments.steps s ON s.saga_id = p.id AND s.name = 'capture'
                                   AND s.status = 'succeeded'
            """
        ).fetchone()
    assert row is not None
    return time.perf_counter() - started, int(row[0]), int(row[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    day = datetime.now(UTC).date() - timedelta(days=1)
    with tempfile.TemporaryDirectory(prefix="bench-recon-") as root:
        stack = Stack(root=Path(root), ports=Ports.free(), watch_policies=False)
        try:
            url = stack.start_postgres()
            upgrade(url)
            load(url, args.lines, day)
            data = settlement_csv(args.lines, day)
            before_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            ours_s, run = asyncio.run(ours(url, data, day))
            peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            base_s, base_matched, base_mismatched = baseline(url, data)
        finally:
            stack.stop_all()
    n = args.lines
    print(f"lines: {n:,} ({len(data) / 1e6:.1f} MB file)")
    print(
        f"ours:     {ours_s:8.2f} s  {n / ours_s:10,.0f} lines/s"
        f"  matched {run.matched:,}, amount mismatches {run.amount_mismatches:,}"
    )
    print(
        f"baseline: {base_s:8.2f} s  {n / base_s:10,.0f} lines/s"
        f"  matched {base_matched:,}, amount mismatches {base_mismatched:,}"
    )
    print(
        f"speed vs baseline: {base_s / ours_s:.2f}x;  peak RSS after ours: {peak_mib:,.0f} MiB"
        f" (before ours, with the file in memory: {before_mib:,.0f} MiB)"
    )


if __name__ == "__main__":
    main()

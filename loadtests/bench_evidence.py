"""Evidence service benchmark at 1,000,000 records.

    XDG_RUNTIME_DIR=/tmp .venv/bin/python loadtests/bench_evidence.py [--records N]

Starts its own PostgreSQL, OpenBao and OPA (free ports, temp dir), bulk-loads N records
into the evidence database exactly as the append path would have stored them (same JCS
leaf hashes, same stored Merkle nodes, same frontier; COPY instead of one transaction per
record), signs a checkpoint, then starts the real API and evidence service and measures:

1. appends per second through the real append path: the service layer (one transaction per
   record, as the handler runs it), and end to end over HTTP (token, RFC 9421 signature,
   OPA, idempotency, audit) with the pipeline's own EvidenceClient;
2. p50/p99 latency of a `control` + one-day `from`/`to` query (first page, limit 50);
3. the time to build an inclusion proof against the latest checkpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.entrypoints.devstack import Ports, Stack
from app.entrypoints.launchers.openbao import DEV_ROOT_TOKEN
from app.entrypoints.launchers.postgres import EVIDENCE_DATABASE_NAME
from app.identity import api as identity_api
from app.platform.db import create_engine, libpq_url, session_factory
from app.platform.settings import VaultLogin
from app.platform.vault import Vault
from evidence import database, merkle, records, service, tree
from evidence.config import SIGNING_KEY_NAME
from evidence.signing import TransitSigner
from pipeline.evidence_client import EvidenceClient

CONTROLS = [f"SOC2:CC{a}.{b}" for a in range(6, 9) for b in range(1, 5)] + [
    f"PCI-DSS-4.0.1:{a}.{b}.{c}" for a in (6, 10) for b in (2, 3) for c in (1, 2)
]
TYPES = ["ci.gate", "ci.run", "ci.promotion", "recon.run", "drill", "key.rotation"]
RESULTS = ["pass", "pass", "pass", "fail", "error", "info"]
SPAN = timedelta(days=30)
ORIGIN = "moneypath.dev/evidence"


def pct(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def submission(i: int, started: datetime) -> dict[str, Any]:
    rng = random.Random(i)
    controls = rng.sample(CONTROLS, rng.choice((1, 2, 3)))
    return {
        "type": TYPES[i % len(TYPES)],
        "control_refs": controls,
        "result": RESULTS[rng.randrange(len(RESULTS))],
        "subject": {
            "commit": f"{rng.getrandbits(160):040x}",
            "artifacts": [{"name": "requirements.lock", "digest": f"sha256:{i:064x}"}],
        },
        "tool": {"name": "bandit", "version": "1.8.0"},
        "actor": "ci/pipeline",
        "started_at": records.format_time(started),
        "finished_at": records.format_time(started + timedelta(seconds=3)),
        "details": {"gate": "bandit", "findings_total": rng.randrange(5), "run": i},
    }


def bulk_load(url: str, count: int, end: datetime) -> datetime:
    """COPY `count` records ending at `end`; returns the first record's collected_at."""
    start = end - SPAN
    step = SPAN / count
    frontier: list[bytes] = []
    started = time.perf_counter()
    with psycopg.connect(libpq_url(url)) as connection:
        with connection.cursor() as cursor:
            with (
                cursor.copy(
                    "COPY evidence.records (seq, id, type, result, commit, collected_at, "
                    "record, leaf_hash) FROM STDIN"
                ) as copy_records,
            ):
                controls: list[tuple[str, int]] = []
                nodes: list[tuple[int, int, bytes]] = []
                for i in range(count):
                    collected = start + step * i
                    record = records.build_record(
                        submission(i, collected - timedelta(seconds=4)),
                        "evd_" + secrets.token_hex(16),
                        i,
                        collected,
                    )
                    canonical = rfc8785.dumps(record)
                    leaf = merkle.leaf_hash(canonical)
                    frontier, completed = merkle.frontier_append(frontier, i, leaf)
                    nodes.extend(completed)
                    controls.extend((control, i) for control in record["control_refs"])
                    copy_records.write_row(
                        (
                            i,
                            record["id"],
                            record["type"],
                            record["result"],
                            record["subject"]["commit"],
                            collected,
                            canonical.decode(),
                            leaf,
                        )
                    )
                    if i and i % 200_000 == 0:
                        print(f"  generated {i} records ({time.perf_counter() - started:.0f} s)")
            with cursor.copy("COPY evidence.record_controls (control, seq) FROM STDIN") as copy:
                for row in controls:
                    copy.write_row(row)
            with cursor.copy("COPY evidence.tree_nodes (level, index, hash) FROM STDIN") as copy:
                for row in nodes:
                    copy.write_row(row)
            cursor.execute(
                "UPDATE evidence.log_state SET size = %s, frontier = %s, last_collected_at = %s",
                (count, frontier, start + step * (count - 1)),
            )
        connection.commit()
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE evidence.records")
            cursor.execute("ANALYZE evidence.record_controls")
            cursor.execute("ANALYZE evidence.tree_nodes")
        connection.commit()
    print(
        f"bulk load: {count} records, {len(nodes)} tree nodes, {len(controls)} control rows "
        f"in {time.perf_counter() - started:.0f} s"
    )
    return start


async def service_measurements(
    url: str, signer: TransitSigner, start: datetime, appends: int
) -> dict[str, Any]:
    engine = create_engine(url, pool_size=8)
    sessions = session_factory(engine)
    results: dict[str, Any] = {}
    try:
        checkpoint = await tree.issue_checkpoint(sessions, signer, ORIGIN)
        assert checkpoint is not None
        size = checkpoint.size
        # Appends, sequential: one transaction per record, exactly as the POST handler runs.
        latencies: list[float] = []
        began = time.perf_counter()
        for i in range(appends):
            body = records.prepare_submission(
                submission(10_000_000 + i, datetime.now(UTC) - timedelta(seconds=5))
            )
            t0 = time.perf_counter()
            async with sessions() as session, session.begin():
                await service.append(session, body)
            latencies.append((time.perf_counter() - t0) * 1000)
        elapsed = time.perf_counter() - began
        results["append_service_seq_per_s"] = appends / elapsed
        results["append_service_seq_ms"] = pct(latencies)

        # Appends, 8 concurrent writers: the log_state row lock serializes them.
        async def writer(offset: int, n: int) -> None:
            for i in range(n):
                body = records.prepare_submission(
                    submission(20_000_000 + offset * n + i, datetime.now(UTC))
                )
                async with sessions() as session, session.begin():
                    await service.append(session, body)

        began = time.perf_counter()
        await asyncio.gather(*(writer(w, appends // 8) for w in range(8)))
        results["append_service_conc8_per_s"] = (appends // 8 * 8) / (time.perf_counter() - began)

        # Query: one control + a one-day window, first page of 50.
        rng = random.Random(7)
        query_ms: list[float] = []
        counts: list[int] = []
        for _ in range(400):
            low = start + timedelta(
                seconds=rng.uniform(0, (SPAN - timedelta(days=1)).total_seconds())
            )
            filters = service.Filters(
                control=rng.choice(CONTROLS),
                collected_from=low,
                collected_to=low + timedelta(days=1),
            )
            t0 = time.perf_counter()
            async with sessions() as session:
                page, _ = await service.query(session, filters, None, 50)
            query_ms.append((time.perf_counter() - t0) * 1000)
            counts.append(len(page))
        results["query_service_ms"] = pct(query_ms)
        results["query_rows_min"] = min(counts)

        # Deep page: the same filter with a cursor far into the window.
        deep_ms: list[float] = []
        for _ in range(100):
            low = start + timedelta(days=rng.uniform(0, 20))
            filters = service.Filters(
                control=rng.choice(CONTROLS),
                collected_from=low,
                collected_to=low + timedelta(days=5),
            )
            async with sessions() as session:
                bounds = await service.seq_range(session, filters)
                assert bounds is not None
                after = bounds[0] + (size // 30) * 2
                t0 = time.perf_counter()
                await service.query(session, filters, after, 50)
            deep_ms.append((time.perf_counter() - t0) * 1000)
        results["query_service_deep_ms"] = pct(deep_ms)

        # Inclusion proof against the checkpoint: fetch O(log n) nodes and fold them.
        proof_ms: list[float] = []
        for _ in range(500):
            index = rng.randrange(size)
            t0 = time.perf_counter()
            async with sessions() as session:
                proofs = await tree.inclusion_proofs(session, [index], size)
            proof_ms.append((time.perf_counter() - t0) * 1000)
            assert len(proofs[index]) == (size - 1).bit_length() or len(proofs[index]) > 0
        results["proof_service_ms"] = pct(proof_ms)
        results["tree_size"] = size
    finally:
        await engine.dispose()
    return results


def create_client(database_url: str, scopes: list[str]) -> tuple[str, str, str, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )

    async def make() -> identity_api.CreatedClient:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with session_factory(engine)() as session, session.begin():
                return await identity_api.create_client(
                    session, name=f"bench-{secrets.token_hex(3)}", scopes=scopes, public_key_pem=pem
                )
        finally:
            await engine.dispose()

    created = asyncio.run(make())
    return created.client.id, created.client_secret, created.key_id, key


def http_measurements(stack: Stack, start: datetime, appends: int) -> dict[str, Any]:
    assert stack.database_url is not None
    results: dict[str, Any] = {}
    writer_creds = create_client(stack.database_url, ["evidence:write"])
    auditor_creds = create_client(stack.database_url, ["evidence:read"])

    def client(creds: tuple[str, str, str, Ed25519PrivateKey]) -> EvidenceClient:
        client_id, secret, key_id, key = creds
        return EvidenceClient(
            evidence_url=stack.evidence_url,
            token_url=stack.api_url,
            client_id=client_id,
            client_secret=secret,
            key_id=key_id,
            private_key=key,
        )

    threads = 4
    per_thread = appends // threads
    latencies: list[float] = []
    lock = threading.Lock()
    ids: list[str] = []

    def run_writer(offset: int) -> None:
        evidence = client(writer_creds)
        try:
            for i in range(per_thread):
                document = submission(30_000_000 + offset * per_thread + i, datetime.now(UTC))
                t0 = time.perf_counter()
                created = evidence.post("/v1/evidence", document)
                elapsed = (time.perf_counter() - t0) * 1000
                with lock:
                    latencies.append(elapsed)
                    ids.append(str(created["id"]))
        finally:
            evidence.close()

    warm = client(writer_creds)
    warm.post("/v1/evidence", submission(29_999_999, datetime.now(UTC)))
    warm.close()
    workers = [threading.Thread(target=run_writer, args=(n,)) for n in range(threads)]
    began = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results["append_http_per_s"] = len(latencies) / (time.perf_counter() - began)
    results["append_http_ms"] = pct(latencies)

    reader = client(auditor_creds)
    rng = random.Random(11)
    query_ms: list[float] = []
    for _ in range(200):
        low = start + timedelta(seconds=rng.uniform(0, (SPAN - timedelta(days=1)).total_seconds()))
        params = {
            "control": rng.choice(CONTROLS),
            "from": records.format_time(low),
            "to": records.format_time(low + timedelta(days=1)),
        }
        t0 = time.perf_counter()
        reader.get("/v1/evidence", params)
        query_ms.append((time.perf_counter() - t0) * 1000)
    results["query_http_ms"] = pct(query_ms)
    time.sleep(1.5)  # let a checkpoint cover the HTTP appends
    proof_ms: list[float] = []
    with_proof = 0
    for record_id in rng.sample(ids, min(200, len(ids))):
        t0 = time.perf_counter()
        document = reader.get(f"/v1/evidence/{record_id}")
        proof_ms.append((time.perf_counter() - t0) * 1000)
        with_proof += document["inclusion_proof"] is not None
    results["proof_http_ms"] = pct(proof_ms)
    results["proof_http_covered"] = f"{with_proof}/{len(proof_ms)}"
    reader.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--appends", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-evidence-") as root:
        stack = Stack(root=Path(root), ports=Ports.free(), watch_policies=False)
        with stack.running(apps=False):
            url = stack.database_url_for(EVIDENCE_DATABASE_NAME)
            database.upgrade(url)
            start = bulk_load(url, args.records, datetime.now(UTC) - timedelta(minutes=5))
            vault = Vault.login(stack.vault_addr, VaultLogin(token=DEV_ROOT_TOKEN))
            signer = TransitSigner(vault, SIGNING_KEY_NAME)
            signer.ensure_key()
            service_results = asyncio.run(service_measurements(url, signer, start, args.appends))
            stack.start_api()
            stack.start_evidence()
            http_results = http_measurements(stack, start, args.appends)
    print_report({**service_results, **http_results}, args.records)


def print_report(results: dict[str, Any], count: int) -> None:
    def show(p: tuple[float, float]) -> str:
        return f"p50 {p[0]:.2f} ms, p99 {p[1]:.2f} ms"

    print(
        f"\n== evidence benchmark: {count} pre-loaded records, tree size {results['tree_size']} =="
    )
    print(
        f"append, service layer, 1 writer:  {results['append_service_seq_per_s']:.0f}/s "
        f"({show(results['append_service_seq_ms'])})"
    )
    print(f"append, service layer, 8 writers: {results['append_service_conc8_per_s']:.0f}/s")
    print(
        f"append, HTTP end to end, 4 writers: {results['append_http_per_s']:.0f}/s "
        f"({show(results['append_http_ms'])})"
    )
    print(
        f"query control + 1-day range, first page: service {show(results['query_service_ms'])}; "
        f"HTTP {show(results['query_http_ms'])} (min rows {results['query_rows_min']})"
    )
    print(f"query, deep cursor page: service {show(results['query_service_deep_ms'])}")
    print(
        f"inclusion proof vs latest checkpoint: service {show(results['proof_service_ms'])}; "
        f"HTTP GET /v1/evidence/{{id}} {show(results['proof_http_ms'])} "
        f"(covered {results['proof_http_covered']})"
    )


if __name__ == "__main__":
    main()

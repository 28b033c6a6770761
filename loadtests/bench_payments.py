"""Payment throughput: authorize + capture per second over the full stack, vs pgbench TPC-B.

    XDG_RUNTIME_DIR=/tmp .venv/bin/python loadtests/bench_payments.py \
        [--seconds 20] [--clients 8] [--api-workers 2] [--pgbench-clients 8]

Starts its own PostgreSQL, OpenBao, OPA and provider simulator (free ports, temp dir) and
the API under uvicorn, as `moneypath up` does. Each measured request is one
`POST /v1/payments` with `capture: automatic`: bearer token, RFC 9421 signature + nonce,
OPA, Idempotency-Key, KYC and account checks, the risk step, the route step, the provider
authorize and capture over HTTP (simulator), the ledger hold and its posting, audit
records and outbox events. Providers alternate between acme and globex.

Three runs in the same process:
1. the maximum rate: closed loop, `--clients` threads sending as fast as answered;
2. pgbench TPC-B (scale 10) against the same PostgreSQL for the same time;
3. a fixed (open-loop) rate of half the measured maximum: p50/p95/p99 latency measured
   from each request's scheduled start, so a slow answer cannot hide queueing delay.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from tests.support.api_client import ApiClient

PROVIDERS = ("acme", "globex")
PAYMENTS_PER_CUSTOMER = 3


@dataclass
class Run:
    payments_per_s: float
    statuses: Counter[str]
    latencies_ms: list[float]

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies_ms) or [0.0]
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def _body(customers: Sequence[str], account_id: str, n: int) -> dict[str, object]:
    # The risk policy sends a new customer's fourth payment within an hour to review, so
    # each customer pays at most PAYMENTS_PER_CUSTOMER times; the pool is made before the clock.
    customer_id = customers[(n // PAYMENTS_PER_CUSTOMER) % len(customers)]
    return {
        "amount_minor": 100 + n % 1000,
        "currency": "USD",
        "customer_id": customer_id,
        "payment_method": {"provider": PROVIDERS[n % 2], "token": "tok_visa"},
        "merchant_account_id": account_id,
        "capture": "automatic",
    }


def _outcome(response: httpx.Response) -> str:
    if response.status_code != 201:
        return str(response.status_code)
    return str(response.json().get("status"))


def _build(client: ApiClient, customers: Sequence[str], account_id: str, n: int) -> httpx.Request:
    return client.build(
        "POST",
        "/v1/payments",
        json=_body(customers, account_id, n),
        idempotency_key=secrets.token_hex(16),
    )


def max_rate(
    merchants: list[tuple[ApiClient, Sequence[str], str]], seconds: float, presigned: int
) -> Run:
    """Closed loop: every client sends its next payment as soon as the last one answered."""
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    batches = [
        [_build(client, customer, account, n) for n in range(presigned)]
        for client, customer, account in merchants
    ]
    stop_at = time.monotonic() + seconds

    def drive(index: int) -> None:
        client, customer, account = merchants[index]
        batch = batches[index]
        local: Counter[str] = Counter()
        local_latencies: list[float] = []
        n = presigned
        while time.monotonic() < stop_at:
            request = batch.pop() if batch else _build(client, customer, account, n)
            n += 1
            started = time.perf_counter()
            response = client.send(request)
            local_latencies.append((time.perf_counter() - started) * 1000)
            local[_outcome(response)] += 1
        with lock:
            statuses.update(local)
            latencies.extend(local_latencies)

    started = time.monotonic()
    threads = [threading.Thread(target=drive, args=(i,)) for i in range(len(merchants))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    elapsed = time.monotonic() - started
    return Run(statuses["captured"] / elapsed, statuses, latencies)


def fixed_rate(
    merchants: list[tuple[ApiClient, Sequence[str], str]], seconds: float, rate_per_s: float
) -> Run:
    """Open loop: payment i is due at start + i / rate; latency counts from that moment."""
    total = max(1, int(seconds * rate_per_s))
    requests = [
        _build(*merchants[n % len(merchants)], n) for n in range(total)
    ]  # signed before the clock
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    next_index = [0]
    start = time.monotonic() + 0.5

    def drive() -> None:
        while True:
            with lock:
                index = next_index[0]
                next_index[0] += 1
            if index >= total:
                return
            due = start + index / rate_per_s
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            client = merchants[index % len(merchants)][0]
            response = client.send(requests[index])
            finished = time.monotonic()
            with lock:
                statuses[_outcome(response)] += 1
                latencies.append((finished - due) * 1000)

    # Enough senders that a slow answer never delays the next scheduled request.
    threads = [threading.Thread(target=drive) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 180)
    elapsed = time.monotonic() - start
    return Run(statuses["captured"] / elapsed, statuses, latencies)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--api-workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--pgbench-clients", type=int, default=8)
    parser.add_argument("--presigned", type=int, default=200)
    parser.add_argument(
        "--customers",
        type=int,
        default=60,
        help="verified customers per client, made before the clock",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_ledger import _pgbench

    from app.entrypoints.devstack import Ports, Stack
    from tests.support.api_client import ClientFactory
    from tests.support.payments import new_merchant

    with tempfile.TemporaryDirectory(prefix="bench-payments-") as root:
        stack = Stack(root=Path(root), ports=Ports.free(), watch_policies=False)
        stack.api_workers = args.api_workers
        with stack.running(apps=False):
            stack.start_api(timeout_s=240)  # a busy shared machine starts slowly
            if stack.database_url is None:
                raise SystemExit("no database")
            factory = ClientFactory(stack.database_url, httpx.Client(base_url=stack.api_url))
            https = [httpx.Client(base_url=stack.api_url, timeout=60) for _ in range(args.clients)]
            merchants: list[tuple[ApiClient, Sequence[str], str]] = []
            for http in https:
                merchant = new_merchant(factory, http, ("USD",))
                merchant.client.token()
                customers = [merchant.customer_id] + [
                    merchant.new_customer() for _ in range(args.customers - 1)
                ]
                merchants.append((merchant.client, customers, merchant.account_ids["USD"]))
            print(
                f"payments benchmark: {args.clients} HTTP clients, {args.api_workers} uvicorn "
                f"workers, {args.seconds:.0f} s per run; each payment = authorize + capture at "
                "the simulated provider, ledger hold + post, signed request (RFC 9421 ed25519), "
                "OPA decision, audit and outbox; PostgreSQL fsync=on",
                flush=True,
            )
            peak = max_rate(merchants, args.seconds, args.presigned)
            tps = _pgbench(stack.database_url, args.seconds, args.pgbench_clients)
            print(
                f"max rate: {peak.payments_per_s:.1f} payments/s (closed loop) | pgbench TPC-B "
                f"{tps:.1f} tps | ratio {peak.payments_per_s / tps:.3f} | p50 "
                f"{peak.percentile(0.5):.1f} ms p95 {peak.percentile(0.95):.1f} ms p99 "
                f"{peak.percentile(0.99):.1f} ms | outcomes {dict(peak.statuses)}",
                flush=True,
            )
            rate = max(1.0, peak.payments_per_s / 2)
            steady = fixed_rate(merchants, args.seconds, rate)
            print(
                f"fixed rate {rate:.1f}/s (half the max, open loop): achieved "
                f"{steady.payments_per_s:.1f}/s | p50 {steady.percentile(0.5):.1f} ms p95 "
                f"{steady.percentile(0.95):.1f} ms p99 {steady.percentile(0.99):.1f} ms | "
                f"mean {statistics.fmean(steady.latencies_ms or [0.0]):.1f} ms | outcomes "
                f"{dict(steady.statuses)}",
                flush=True,
            )
            print(f"load average at the end: {os.getloadavg()}", flush=True)
            for http in https:
                http.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

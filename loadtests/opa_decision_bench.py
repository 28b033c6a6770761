"""OPA authorization decision latency, p50/p99, through the app's own `Opa` client
(opa-python-client's AsyncOpaClient, as on the request path).

Starts a real OPA on a free port with the repository's policies (or uses OPA_URL), then
asks `data.moneypath.authz` N times, one request at a time, the way the request pipeline
does, and prints the percentiles.

    .venv/bin/python loadtests/opa_decision_bench.py [N]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from app.entrypoints.devstack import Ports, Stack
from app.platform.opa import Opa, OpaAuthorizer
from app.platform.web import Principal

WARMUP = 200


async def measure(opa_url: str, count: int) -> list[float]:
    opa = Opa(opa_url, timeout_ms=2000)
    authorizer = OpaAuthorizer(opa)
    principal = Principal(client_id="cli_bench", scopes=frozenset({"payments:read"}))
    resource = {"type": "payment", "id": "pay_1", "owner": "cli_bench"}
    samples: list[float] = []
    try:
        for index in range(WARMUP + count):
            started = time.perf_counter()
            decision = await authorizer.decide(principal, "payments.read", resource)
            elapsed = time.perf_counter() - started
            if not decision.allowed:
                raise SystemExit("unexpected deny: the bench input should be allowed")
            if index >= WARMUP:
                samples.append(elapsed * 1000)
    finally:
        await opa.close()
    return samples


def report(samples: list[float]) -> None:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"OPA decisions: n={len(ordered)} p50={p50:.2f} ms p99={p99:.2f} ms "
        f"max={ordered[-1]:.2f} ms"
    )


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    if os.environ.get("OPA_URL"):
        report(asyncio.run(measure(os.environ["OPA_URL"], count)))
        return
    with tempfile.TemporaryDirectory() as root:
        stack = Stack(root=Path(root), ports=Ports.free(), watch_policies=False)
        try:
            stack.start_opa()
            report(asyncio.run(measure(stack.opa_url, count)))
        finally:
            stack.stop_all()


if __name__ == "__main__":
    main()

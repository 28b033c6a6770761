"""Locust load test of the money path: tokens, RFC 9421 signed writes with an
Idempotency-Key on every one, replays, holds, and reads.

Run it through `make loadtest` (which brings up its own stack, or uses MP_API_URL), or:

    MP_API_URL=http://127.0.0.1:8000 MP_CREDENTIALS=ops.json \\
        .venv/bin/locust -f loadtests/locustfile.py --headless -u 8 -r 4 -t 60s

Accounts, customers and merchants are set up on `init`, before the clock starts
and outside the statistics. At the end the `quitting` hook holds the figures to
`loadtests/slo.yml` (p95 and p99 per endpoint, error rate, throughput), prints a
summary table, writes an `ops.loadtest` evidence record when evidence credentials are
given, and sets the exit code: 0 when every objective is met, 1 otherwise.

Environment: MP_API_URL, MP_CREDENTIALS (a `moneypath clients create --out` file with
ledger:write, ledger:read, kyc:write), MP_SLO_FILE, MP_SUMMARY_JSON, MP_REPORT_HTML,
MP_EVIDENCE_URL and MP_EVIDENCE_CREDENTIALS (evidence:write).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx
from locust import User, between, events, task
from locust.env import Environment

sys.path.insert(0, str(Path(__file__).resolve().parent))

from slo_check import EndpointFigures, evaluate, load_slo, table

from app.platform.client_credentials import ClientCredentials
from app.platform.signed_client import SignedClient

HERE = Path(__file__).resolve().parent
CUSTOMERS = 12
MERCHANTS = 4
FUNDING_PER_CUSTOMER_MINOR = 10**9
TIMEOUT = httpx.Timeout(10.0, connect=3.0)


class Setup:
    """What test_start made; shared by every simulated user."""

    credentials: ClientCredentials | None = None
    customers: ClassVar[list[str]] = []
    merchants: ClassVar[list[str]] = []
    started_at: str = ""
    clock_started: float = 0.0


def _api_url() -> str:
    return os.environ.get("MP_API_URL", "http://127.0.0.1:8000").rstrip("/")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _account(client: SignedClient, normal_balance: str, **extra: Any) -> str:
    body = {
        "code": f"lt-{secrets.token_hex(6)}",
        "currency": "USD",
        "normal_balance": normal_balance,
    }
    response = client.post("/v1/ledger/accounts", json={**body, **extra})
    if response.status_code != 201:
        raise RuntimeError(f"set-up failed: {response.status_code} {response.text[:300]}")
    return str(response.json()["id"])


@events.init.add_listener
def set_up(environment: Environment, **_: Any) -> None:
    """Customers (with KYC), their accounts funded, merchant accounts: before the clock.

    On `init`, not `test_start`: Locust's --run-time timer is already running when
    test_start fires, so set-up there would eat into the measured time."""
    Setup.credentials = ClientCredentials.from_file(Path(os.environ["MP_CREDENTIALS"]))
    with SignedClient(Setup.credentials, base_url=_api_url(), timeout=TIMEOUT) as client:
        funding = _account(client, "debit", overdraft_limit_minor=None)
        for index in range(CUSTOMERS):
            customer = client.post(
                "/v1/customers",
                json={
                    "name": f"Load Test {index}",
                    "email": f"lt{index}@example.com",
                    "country": "DE",
                },
            )
            extra = {"customer_id": customer.json()["id"]} if customer.status_code == 201 else {}
            account = _account(client, "credit", **extra)
            funded = client.post(
                "/v1/ledger/transactions",
                json=_transfer(funding, account, FUNDING_PER_CUSTOMER_MINOR, "posted"),
            )
            if funded.status_code != 201:
                raise RuntimeError(f"funding failed: {funded.status_code} {funded.text[:300]}")
            Setup.customers.append(account)
        Setup.merchants = [_account(client, "credit") for _ in range(MERCHANTS)]


@events.test_start.add_listener
def start_clock(environment: Environment, **_: Any) -> None:
    Setup.started_at = _now()
    Setup.clock_started = time.monotonic()


def _transfer(source: str, target: str, amount_minor: int, status: str) -> dict[str, Any]:
    return {
        "status": status,
        "postings": [
            {
                "account_id": source,
                "direction": "debit",
                "amount_minor": amount_minor,
                "currency": "USD",
            },
            {
                "account_id": target,
                "direction": "credit",
                "amount_minor": amount_minor,
                "currency": "USD",
            },
        ],
    }


class MoneyPathUser(User):
    """One integrator: its own token cache and signer, a mix of writes and reads."""

    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        assert Setup.credentials is not None
        self.client = SignedClient(Setup.credentials, base_url=_api_url(), timeout=TIMEOUT)
        self._token()
        self.client.tokens.get()

    def on_stop(self) -> None:
        self.client.close()

    def _measure(self, method: str, name: str, call: Any, expected: int, check: Any = None) -> Any:
        started = time.perf_counter()
        exception: Exception | None = None
        response = None
        try:
            response = call()
            if response.status_code != expected:
                exception = RuntimeError(f"{response.status_code} {response.text[:200]}")
            elif check is not None and not check(response):
                exception = RuntimeError("response did not check out")
        except (httpx.HTTPError, RuntimeError) as error:
            exception = error
        self.environment.events.request.fire(
            request_type=method,
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=len(response.content) if response is not None else 0,
            exception=exception,
            context={},
        )
        return response if exception is None else None

    def _token(self) -> None:
        # One token request, as an integrator makes every few minutes; the cached token
        # keeps serving the writes.
        key_id = self.client.credentials.key_id
        self._measure(
            "POST", "/v1/oauth/token", lambda: self.client.tokens.fetch(None, key_id), 200
        )

    @task(6)
    def pay_merchant(self) -> None:
        body = _transfer(
            random.choice(Setup.customers),
            random.choice(Setup.merchants),
            random.randint(1, 5000),
            "posted",
        )
        self._measure(
            "POST",
            "/v1/ledger/transactions",
            lambda: self.client.post("/v1/ledger/transactions", json=body),
            201,
        )

    @task(2)
    def hold_then_capture(self) -> None:
        body = _transfer(
            random.choice(Setup.customers),
            random.choice(Setup.merchants),
            random.randint(1, 5000),
            "pending",
        )
        held = self._measure(
            "POST",
            "/v1/ledger/transactions",
            lambda: self.client.post("/v1/ledger/transactions", json=body),
            201,
        )
        if held is None:
            return
        path = f"/v1/ledger/transactions/{held.json()['id']}"
        if random.random() < 0.75:
            self._measure(
                "POST",
                "/v1/ledger/transactions/{id}/post",
                lambda: self.client.post(path + "/post"),
                200,
            )
        else:
            self._measure(
                "POST",
                "/v1/ledger/transactions/{id}/void",
                lambda: self.client.post(path + "/void"),
                200,
            )

    @task(1)
    def retry_after_lost_response(self) -> None:
        body = _transfer(
            random.choice(Setup.customers),
            random.choice(Setup.merchants),
            random.randint(1, 5000),
            "posted",
        )
        key = f"lt-{secrets.token_hex(8)}"
        first = self._measure(
            "POST",
            "/v1/ledger/transactions",
            lambda: self.client.post("/v1/ledger/transactions", json=body, idempotency_key=key),
            201,
        )
        if first is None:
            return
        self._measure(
            "POST",
            "/v1/ledger/transactions (replay)",
            lambda: self.client.post("/v1/ledger/transactions", json=body, idempotency_key=key),
            201,
            lambda r: (
                r.headers.get("idempotent-replayed") == "true"
                and r.json()["id"] == first.json()["id"]
            ),
        )

    @task(4)
    def read_balance(self) -> None:
        account = random.choice(Setup.customers + Setup.merchants)
        self._measure(
            "GET",
            "/v1/ledger/accounts/{id}",
            lambda: self.client.get(f"/v1/ledger/accounts/{account}"),
            200,
        )

    @task(2)
    def read_entries(self) -> None:
        account = random.choice(Setup.merchants)
        self._measure(
            "GET",
            "/v1/ledger/accounts/{id}/entries",
            lambda: self.client.get(f"/v1/ledger/accounts/{account}/entries", params={"limit": 20}),
            200,
        )

    @task(1)
    def renew_token(self) -> None:
        self._token()


@events.quitting.add_listener
def hold_to_slo(environment: Environment, **_: Any) -> None:
    """Check the percentiles against the SLO file, print the table, record the evidence."""
    duration_s = time.monotonic() - Setup.clock_started if Setup.clock_started else 0.0
    stats = environment.stats
    endpoints = [
        EndpointFigures(
            name=f"{method} {name}",
            requests=entry.num_requests,
            failures=entry.num_failures,
            p50_ms=int(entry.get_response_time_percentile(0.50) or 0),
            p95_ms=int(entry.get_response_time_percentile(0.95) or 0),
            p99_ms=int(entry.get_response_time_percentile(0.99) or 0),
        )
        for (name, method), entry in stats.entries.items()
    ]
    slo_path = Path(os.environ.get("MP_SLO_FILE", HERE / "slo.yml"))
    verdicts = evaluate(
        load_slo(slo_path),
        endpoints,
        total_requests=stats.total.num_requests,
        total_failures=stats.total.num_failures,
        duration_s=duration_s,
    )
    passed = all(v.met for v in verdicts)
    print("\n" + table(endpoints, verdicts), flush=True)
    print(f"\nloadtest against {slo_path.name}: {'PASS' if passed else 'FAIL'}", flush=True)
    summary = {
        "passed": passed,
        "duration_ms": int(duration_s * 1000),
        "requests": stats.total.num_requests,
        "failures": stats.total.num_failures,
        "endpoints": {
            e.name: {
                "requests": e.requests,
                "failures": e.failures,
                "p50_ms": e.p50_ms,
                "p95_ms": e.p95_ms,
                "p99_ms": e.p99_ms,
            }
            for e in endpoints
        },
        "objectives": [
            {"objective": v.objective, "target": v.target, "measured": v.measured, "met": v.met}
            for v in verdicts
        ],
    }
    if os.environ.get("MP_SUMMARY_JSON"):
        Path(os.environ["MP_SUMMARY_JSON"]).write_text(json.dumps(summary, indent=2))
    summary["evidence_id"] = _write_evidence(summary, slo_path)
    if os.environ.get("MP_SUMMARY_JSON"):
        Path(os.environ["MP_SUMMARY_JSON"]).write_text(json.dumps(summary, indent=2))
    environment.process_exit_code = 0 if passed else 1


def _write_evidence(summary: dict[str, Any], slo_path: Path) -> str | None:
    evidence_url = os.environ.get("MP_EVIDENCE_URL")
    credentials_file = os.environ.get("MP_EVIDENCE_CREDENTIALS")
    if not evidence_url or not credentials_file:
        print("no MP_EVIDENCE_URL/MP_EVIDENCE_CREDENTIALS: ops.loadtest record not written")
        return None
    artifacts = [
        {
            "name": slo_path.name,
            "digest": "sha256:" + hashlib.sha256(slo_path.read_bytes()).hexdigest(),
        }
    ]
    html = os.environ.get("MP_REPORT_HTML")
    if html and Path(html).exists():
        artifacts.append(
            {
                "name": Path(html).name,
                "digest": "sha256:" + hashlib.sha256(Path(html).read_bytes()).hexdigest(),
            }
        )
    record = {
        "type": "ops.loadtest",
        "control_refs": ["SOC2:A1.1", "SOC2:A1.2"],
        "result": "pass" if summary["passed"] else "fail",
        "subject": {"artifacts": artifacts},
        "tool": {"name": "locust", "version": _locust_version()},
        "actor": "make loadtest",
        "started_at": Setup.started_at or _now(),
        "finished_at": _now(),
        "details": {
            key: summary[key]
            for key in ("duration_ms", "requests", "failures", "endpoints", "objectives")
        },
    }
    credentials = ClientCredentials.from_file(Path(credentials_file))
    with (
        httpx.Client(base_url=_api_url(), timeout=TIMEOUT) as issuer,
        SignedClient(
            credentials, base_url=evidence_url, token_http=issuer, timeout=TIMEOUT
        ) as evidence,
    ):
        response = evidence.post("/v1/evidence", json=record)
    if response.status_code != 201:
        print(f"ops.loadtest record refused: {response.status_code} {response.text[:300]}")
        return None
    print(f"ops.loadtest evidence record {response.json()['id']}")
    return str(response.json()["id"])


def _locust_version() -> str:
    from importlib.metadata import version

    return version("locust")

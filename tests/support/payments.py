"""Helpers for payments e2e tests: an API process of our own, the simulator's control API,
and a merchant set-up (client, verified customer, merchant account) over real HTTP.

Payments tests run their own uvicorn API process (not the shared `live_stack` one) so
that they can set payments settings (fast webhook schedule, short recovery age, breaker
limits) and kill it with SIGKILL without disturbing other tests.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from app.entrypoints.devstack import Stack
from app.entrypoints.launchers.processes import REPO_ROOT, free_port, wait_until
from tests.support.api_client import ApiClient, ClientFactory

# Fast schedules and short limits, so faults and recovery play out in seconds.
FAST_ENV = {
    "MONEYPATH_ENV": "test",
    "WEBHOOK_SCHEDULE_SCALE": "0.0001",
    "WEBHOOK_TIMEOUT_S": "2",
    "PAYMENTS_RECOVERY_AFTER_S": "1",
    "PROVIDER_AUTHORIZE_TIMEOUT_MS": "1500",
    "PROVIDER_CAPTURE_TIMEOUT_MS": "1500",
    "PROVIDER_REFUND_TIMEOUT_MS": "1500",
    "PROVIDER_VOID_TIMEOUT_MS": "1500",
    "PROVIDER_PAYOUT_TIMEOUT_MS": "1500",
    "PROVIDER_LOOKUP_TIMEOUT_MS": "1500",
    "PROVIDER_RETRY_ATTEMPTS": "3",
    "PROVIDER_RETRY_BASE_MS": "20",
    "PROVIDER_RETRY_CAP_MS": "100",
    "PROVIDER_BREAKER_THRESHOLD": "4",
    "PROVIDER_BREAKER_RESET_MS": "1500",
    # The risk time box: this shared 2-core machine can stall a healthy OPA past the 250 ms
    # default, which would (correctly) hold payments for review that the tests expect
    # approved. OPA stopped still fails at once (connection refused), well inside it.
    "RISK_TIMEOUT_MS": "2000",
}


def key() -> str:
    return str(uuid.uuid4())


@dataclass
class ApiProcess:
    """One uvicorn API process with its own port and environment."""

    stack: Stack
    name: str
    env: dict[str, str]
    port: int
    process: subprocess.Popen[bytes] | None = None
    log_file: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.stack.log_dir / f"{self.name}.log"

    def start(self, extra_env: Mapping[str, str] | None = None) -> None:
        env = {**self.env, **(extra_env or {})}
        argv = [
            sys.executable, "-m", "uvicorn", "app.entrypoints.asgi:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
        ]  # fmt: skip
        if self.log_file is None:
            self.log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            argv, stdout=self.log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=REPO_ROOT, start_new_session=True,
        )  # fmt: skip
        wait_until(
            lambda: httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200,
            timeout_s=60,
            what=self.name,
            fix=f"see {self.log_path}",
            process=self.process,
            log_path=self.log_path,
        )

    def kill9(self) -> None:
        """SIGKILL the whole process group: no shutdown hook, no flush, like a power cut."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.process = None
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


@contextmanager
def api_process(
    stack: Stack, name: str, extra_env: Mapping[str, str] | None = None
) -> Iterator[ApiProcess]:
    port = free_port()
    env = {
        **stack.app_env(),
        **FAST_ENV,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        **(extra_env or {}),
    }
    process = ApiProcess(stack, name, env, port)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def run_worker_once(stack: Stack, env: Mapping[str, str]) -> dict[str, Any]:
    """`moneypath worker --once` as its own process, with the API's payments settings."""
    import json

    done = subprocess.run(
        [sys.executable, "-m", "app.entrypoints.cli", "worker", "--once"],
        env={**stack.app_env(), **FAST_ENV, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"worker failed: {done.stderr.decode()[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return report


def run_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.entrypoints.cli", *args],
        env={**stack.app_env(), **FAST_ENV},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# ---- the simulator ------------------------------------------------------------------------


class Simulator:
    def __init__(self, stack: Stack) -> None:
        self.url = stack.sim_url

    def fault(self, provider: str, operation: str, **fault: Any) -> None:
        response = httpx.put(f"{self.url}/_sim/faults/{provider}/{operation}", json=fault)
        response.raise_for_status()

    def clear(self) -> None:
        httpx.delete(f"{self.url}/_sim/faults").raise_for_status()

    def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.url}/_sim/stats").json()
        return body

    def webhooks(self, **settings: Any) -> dict[str, Any]:
        if settings:
            body: dict[str, Any] = httpx.put(f"{self.url}/_sim/webhooks", json=settings).json()
        else:
            body = httpx.get(f"{self.url}/_sim/webhooks").json()
        return body


# ---- a merchant ----------------------------------------------------------------------------

MERCHANT_SCOPES = (
    "payments:write",
    "payments:read",
    "refunds:write",
    "payouts:write",
    "kyc:write",
    "ledger:write",
    "ledger:read",
)


@dataclass
class Merchant:
    """A client with a verified customer and a merchant account per currency.

    With `customer_per_payment`, each `pay` without an explicit `customer_id` is made by a
    fresh verified customer, so the risk policy's velocity limits (a new customer may make
    only a few payments an hour) see ordinary shoppers, not one customer's burst. Tests of
    velocity pass `customer_id` to pay as one customer.
    """

    client: ApiClient
    customer_id: str
    account_ids: dict[str, str]
    customer_per_payment: bool = False

    def new_customer(self) -> str:
        return new_customer(self.client)

    def pay(self, amount_minor: int, *, currency: str = "USD", token: str = "tok_visa",
            provider: str = "acme", capture: str = "automatic",
            idempotency_key: str | None = None,
            customer_id: str | None = None) -> httpx.Response:  # fmt: skip
        if customer_id is None:
            customer_id = self.new_customer() if self.customer_per_payment else self.customer_id
        return self.client.post(
            "/v1/payments",
            json={
                "amount_minor": amount_minor,
                "currency": currency,
                "customer_id": customer_id,
                "payment_method": {"provider": provider, "token": token},
                "merchant_account_id": self.account_ids[currency],
                "capture": capture,
            },
            idempotency_key=idempotency_key or key(),
        )

    def payment(self, payment_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/payments/{payment_id}")
        if response.status_code != 200:
            raise AssertionError(response.text)
        body: dict[str, Any] = response.json()
        return body

    def account(self, account_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get(f"/v1/ledger/accounts/{account_id}").json()
        return body

    def balance(self, currency: str = "USD") -> dict[str, int]:
        balances: dict[str, int] = self.account(self.account_ids[currency])["balances"]
        return balances

    def transaction(self, transaction_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get(f"/v1/ledger/transactions/{transaction_id}").json()
        return body


def new_customer(client: ApiClient) -> str:
    """A verified customer (KYC tier `basic`: no date of birth on file) of `client`."""
    customer = client.post(
        "/v1/customers",
        json={"name": "Ada Buyer", "email": "ada@example.com", "country": "DE"},
        idempotency_key=key(),
    )
    assert customer.status_code == 201, customer.text
    customer_id: str = customer.json()["id"]
    verified = client.post(
        f"/v1/customers/{customer_id}/kyc", json={"status": "verified"}, idempotency_key=key()
    )
    assert verified.status_code == 200, verified.text
    return customer_id


def new_merchant(
    factory: ClientFactory, http: httpx.Client, currencies: tuple[str, ...] = ("USD", "EUR")
) -> Merchant:
    client = factory(scopes=MERCHANT_SCOPES, http=http)
    customer_id = new_customer(client)
    accounts = {}
    for currency in currencies:
        account = client.post(
            "/v1/ledger/accounts",
            json={
                "code": f"merchant:{uuid.uuid4().hex[:12]}:{currency}",
                "currency": currency,
                "normal_balance": "credit",
            },
            idempotency_key=key(),
        )
        assert account.status_code == 201, account.text
        accounts[currency] = account.json()["id"]
    return Merchant(client, customer_id, accounts, customer_per_payment=True)


def wait_for(check: Any, timeout_s: float = 20.0, interval_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s (last: {last!r})")


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# ---- a merchant's webhook receiver ---------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    """A merchant's HTTP endpoint in the test process, with a scripted answer per path.

    `plan(path, [500, 500, 200])` answers in that order, then repeats the last entry;
    an entry "hang" never answers (sleeps past the sender's timeout); a tuple
    (status, headers) sets response headers too.
    """

    def __init__(self) -> None:
        import http.server
        import threading

        self.received: list[Received] = []
        self.plans: dict[str, list[Any]] = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with outer.lock:
                    outer.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                 body, time.monotonic())
                    )  # fmt: skip
                    plan = outer.plans.get(self.path, [200])
                    answer = plan.pop(0) if len(plan) > 1 else plan[0]
                if answer == "hang":
                    time.sleep(5)
                    return
                status, headers = answer if isinstance(answer, tuple) else (answer, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def plan(self, path: str, answers: list[Any]) -> None:
        with self.lock:
            self.plans[path] = list(answers)

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [item for item in self.received if item.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def worker_process(stack: Stack, name: str, env: Mapping[str, str] | None = None,
                   interval_s: float = 0.3) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """`moneypath worker` in a loop, with the fast payments settings."""
    log = (stack.log_dir / f"{name}.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.entrypoints.cli", "worker", "--interval", str(interval_s)],
        env={**stack.app_env(), **FAST_ENV, **(env or {})},
        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        log.close()

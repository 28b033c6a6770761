"""What every drill needs around its fault: clients, traffic, polling and the invariants.

`Traffic` is a set of writers that move money between the drill's own accounts the way a
correct client does: each logical transfer has one Idempotency-Key, reused on every retry
until the API gives a definitive answer. After recovery `settle()` resends whatever is
still open, so the drill knows exactly which transfers must be in the ledger once each.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.entrypoints.devstack import Stack
from app.entrypoints.drills.report import DrillReport
from app.platform.client_credentials import ClientCredentials, public_pem
from app.platform.signed_client import SignedClient

POLL_INTERVAL_S = 0.25
REQUEST_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
MAX_SETTLE_ATTEMPTS = 20
# A key whose request died with the database stays claimed until the API's stale-claim
# window (IDEMPOTENCY_STALE_CLAIM_S, 60 s by default) passes; 409 says when via Retry-After.
SETTLE_DEADLINE_S = 90.0
MAX_RETRY_AFTER_S = 10.0
CURRENCY = "USD"


def create_client(stack: Stack, name: str, scopes: Iterable[str]) -> ClientCredentials:
    """Register a client straight in the stack's database, as `moneypath clients create` does."""
    from app.identity import api as identity_api
    from app.platform.db import create_engine, session_factory

    private_key = Ed25519PrivateKey.generate()
    if stack.database_url is None:
        raise RuntimeError("the stack has no database")
    url = stack.database_url

    async def create() -> identity_api.CreatedClient:
        engine = create_engine(url, pool_size=1)
        try:
            async with session_factory(engine)() as session, session.begin():
                return await identity_api.create_client(
                    session, name=name, scopes=list(scopes), public_key_pem=public_pem(private_key)
                )
        finally:
            await engine.dispose()

    created = asyncio.run(create())
    return ClientCredentials(created.client.id, created.client_secret, created.key_id, private_key)


def signed(stack: Stack, credentials: ClientCredentials) -> SignedClient:
    return SignedClient(credentials, base_url=stack.api_url, timeout=REQUEST_TIMEOUT)


def poll(check: Callable[[], bool], deadline_s: float) -> float | None:
    """Seconds until `check()` held, or None when it did not within `deadline_s`."""
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        try:
            if check():
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(POLL_INTERVAL_S)
    return None


def readyz(stack: Stack) -> httpx.Response:
    return httpx.get(f"{stack.api_url}/readyz", timeout=5)


def metric_value(stack: Stack, name: str, labels: dict[str, str] | None = None) -> float:
    """The sum of one metric's samples whose labels include `labels`, scraped from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{stack.api_url}/metrics", timeout=5).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(
                sample.labels.get(k) == v for k, v in (labels or {}).items()
            ):
                total += sample.value
    return total


def open_account(client: SignedClient, normal_balance: str, unlimited: bool = False) -> str:
    body: dict[str, Any] = {
        "code": f"drill-{secrets.token_hex(6)}",
        "currency": CURRENCY,
        "normal_balance": normal_balance,
    }
    if unlimited:
        body["overdraft_limit_minor"] = None
    response = client.post("/v1/ledger/accounts", json=body)
    if response.status_code != 201:
        raise RuntimeError(f"could not open an account: {response.status_code} {response.text}")
    return str(response.json()["id"])


@dataclass
class Transfer:
    key: str
    amount_minor: int
    target: str
    status: int | None = None
    attempts: int = 0
    retry_after_s: float = 0.5


@dataclass
class Traffic:
    """Writers moving money from one funding account to several targets, until stopped."""

    client: SignedClient
    funding: str
    targets: list[str]
    writers: int = 4
    transfers: list[Transfer] = field(default_factory=list)
    answers: dict[int, int] = field(default_factory=dict)
    problem_codes: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _send(self, transfer: Transfer) -> None:
        body = {
            "status": "posted",
            "postings": [
                {
                    "account_id": self.funding,
                    "direction": "debit",
                    "amount_minor": transfer.amount_minor,
                    "currency": CURRENCY,
                },
                {
                    "account_id": transfer.target,
                    "direction": "credit",
                    "amount_minor": transfer.amount_minor,
                    "currency": CURRENCY,
                },
            ],
        }
        transfer.attempts += 1
        try:
            response = self.client.post(
                "/v1/ledger/transactions", json=body, idempotency_key=transfer.key
            )
        except httpx.HTTPError:
            with self._lock:
                self.answers[0] = self.answers.get(0, 0) + 1
            return
        with self._lock:
            self.answers[response.status_code] = self.answers.get(response.status_code, 0) + 1
            if response.headers.get("content-type", "").startswith("application/problem+json"):
                code = str(response.json().get("code"))
                self.problem_codes[code] = self.problem_codes.get(code, 0) + 1
        if response.status_code < 500 and response.status_code not in (401, 409):
            transfer.status = response.status_code
        retry_after = response.headers.get("retry-after", "")
        transfer.retry_after_s = (
            min(float(retry_after), MAX_RETRY_AFTER_S) if retry_after.isdigit() else 0.5
        )

    def _write(self, index: int) -> None:
        while not self._stop.is_set():
            transfer = Transfer(
                key=f"drill-{secrets.token_hex(8)}",
                amount_minor=1 + secrets.randbelow(500),
                target=self.targets[index % len(self.targets)],
            )
            with self._lock:
                self.transfers.append(transfer)
            # Retry the same key (bounded) until the answer is definitive, as a client must.
            for _ in range(MAX_SETTLE_ATTEMPTS):
                self._send(transfer)
                if transfer.status is not None or self._stop.is_set():
                    break
                time.sleep(0.2)

    def start(self) -> None:
        for index in range(self.writers):
            thread = threading.Thread(target=self._write, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def settle(self) -> int:
        """Resend every transfer without a definitive answer, honouring Retry-After, for at
        most SETTLE_DEADLINE_S; returns how many stay open."""
        deadline = time.monotonic() + SETTLE_DEADLINE_S
        for transfer in [t for t in self.transfers if t.status is None]:
            while transfer.status is None and time.monotonic() < deadline:
                self._send(transfer)
                if transfer.status is None:
                    time.sleep(transfer.retry_after_s)
        return sum(1 for t in self.transfers if t.status is None)


def check_ledger(report: DrillReport, client: SignedClient, traffic: Traffic) -> None:
    """verify ok; money conserved; every acknowledged transfer booked exactly once."""
    verify = client.get("/v1/ledger/verify").json()
    report.check(
        "ledger_verify_ok", verify.get("ok") is True, f"{verify.get('entries_checked')} entries"
    )
    posted: dict[str, int] = {}
    for account in [traffic.funding, *traffic.targets]:
        balances = client.get(f"/v1/ledger/accounts/{account}").json()["balances"]
        posted[account] = int(balances["posted"])
    credited = sum(posted[t] for t in traffic.targets)
    report.check(
        "money_conserved",
        posted[traffic.funding] == credited,
        f"funding debited {posted[traffic.funding]}, targets credited {credited}",
    )
    booked = [t for t in traffic.transfers if t.status == 201]
    expected: dict[str, int] = {t: 0 for t in traffic.targets}
    for transfer in booked:
        expected[transfer.target] += transfer.amount_minor
    report.check(
        "nothing_lost_or_duplicated",
        all(posted[t] == expected[t] for t in traffic.targets),
        f"{len(booked)} acknowledged transfers",
    )
    report.figures["transfers_acknowledged"] = len(booked)
    report.figures["transfers_refused"] = sum(
        1 for t in traffic.transfers if t.status not in (None, 201)
    )


def write_evidence(report: DrillReport, stack: Stack, credentials: ClientCredentials) -> None:
    """Append the drill's `ops.drill` record to the evidence service (token from the API)."""
    with (
        httpx.Client(base_url=stack.api_url, timeout=REQUEST_TIMEOUT) as issuer,
        SignedClient(
            credentials, base_url=stack.evidence_url, token_http=issuer, timeout=REQUEST_TIMEOUT
        ) as evidence,
    ):
        response = evidence.post("/v1/evidence", json=report.evidence())
    if response.status_code != 201:
        report.note(f"evidence refused: {response.status_code} {response.text[:200]}")
        report.checks["evidence_written"] = False
        return
    report.evidence_id = str(response.json()["id"])
    report.note(f"evidence record {report.evidence_id} written")

"""The worker's own /metrics (issue 14 section 1): what the `moneypath worker` process counts
(dead letters, deliveries) is scrapeable, and the database-backed backlogs are right."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.entrypoints.devstack import Stack
from app.entrypoints.launchers.processes import REPO_ROOT, free_port
from tests.support.api_client import ClientFactory
from tests.support.payments import (
    FAST_ENV,
    Merchant,
    Receiver,
    key,
    new_merchant,
    wait_for,
    worker_process,
)


@pytest.fixture(scope="module")
def metrics_url(stack: Stack) -> Iterator[str]:
    port = free_port()
    env = {"WEBHOOK_TIMEOUT_S": "1", "WORKER_METRICS_PORT": str(port)}
    with worker_process(stack, "metrics-worker", env):
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(f"{url}/healthz"), timeout_s=60, interval_s=0.5)
        yield f"{url}/metrics"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _samples(text: str) -> dict[str, float]:
    """Unlabelled samples by name (the families this test reads have no labels)."""
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def _scrape(url: str) -> dict[str, float]:
    response = httpx.get(url, timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return _samples(response.text)


def _db_one(stack: Stack, sql: str) -> Any:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        row = connection.execute(sql).fetchone()
    assert row is not None
    return row[0]


def _dead(stack: Stack) -> int:
    return int(_db_one(stack, "SELECT count(*) FROM payments.deliveries WHERE status = 'dead'"))


@pytest.fixture(scope="module")
def own_merchant(client_factory: ClientFactory, payments_http: httpx.Client) -> Merchant:
    """A merchant of its own: the session's shares webhook endpoints with other modules."""
    return new_merchant(client_factory, payments_http)


def _dead_for(stack: Stack, endpoint_id: str) -> tuple[str, int] | None:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT status, attempts FROM payments.deliveries WHERE endpoint_id = %s",
            (endpoint_id,),
        ).fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


def test_worker_metrics_count_a_dead_letter_when_receiver_never_answers(
    stack: Stack,
    own_merchant: Merchant,
    receiver: Receiver,
    metrics_url: str,
    payments_http: httpx.Client,
) -> None:
    before = _scrape(metrics_url)
    path = "/hooks/never"
    receiver.plan(path, ["hang"])
    created = own_merchant.client.post(
        "/v1/webhook-endpoints",
        json={"url": receiver.url + path, "event_types": ["payment.authorized"]},
        idempotency_key=key(),
    )
    assert created.status_code == 201, created.text
    endpoint_id = created.json()["id"]
    own_merchant.pay(1200, capture="manual")
    wait_for(lambda: _dead_for(stack, endpoint_id) == ("dead", 10), timeout_s=90, interval_s=1)
    assert len(receiver.at(path)) == 10
    # Deliveries left behind by earlier modules may die meanwhile, so the scrape is
    # bracketed by the database's count before and after it.
    low = _dead(stack)
    after = _scrape(metrics_url)
    high = _dead(stack)
    assert low <= after["moneypath_webhook_dead_letters_waiting"] <= high
    # The counter is what this worker dead-lettered: ours at least.
    assert after["moneypath_webhook_dead_letters_total"] >= (
        before.get("moneypath_webhook_dead_letters_total", 0) + 1
    )
    # The API's /metrics reads the same waiting figure from the database.
    low = _dead(stack)
    api_sample = _samples(payments_http.get("/metrics").text)
    high = _dead(stack)
    assert low <= api_sample["moneypath_webhook_dead_letters_waiting"] <= high
    assert low >= 1


def test_worker_metrics_report_outbox_backlog_when_scraped(stack: Stack, metrics_url: str) -> None:
    sql = "SELECT count(*) FROM platform.outbox WHERE published_at IS NULL"
    first = int(_db_one(stack, sql))
    scraped = _scrape(metrics_url)
    second = int(_db_one(stack, sql))
    # The worker relays in between: the sample lies between the counts around it.
    assert min(first, second) <= scraped["moneypath_outbox_depth"] <= max(first, second)
    assert scraped["moneypath_outbox_oldest_age_seconds"] >= 0


def test_worker_exits_naming_the_setting_when_metrics_port_is_taken(stack: Stack) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = int(taken.getsockname()[1])
        result = subprocess.run(
            [sys.executable, "-m", "app.entrypoints.cli", "worker", "--max-cycles", "1"],
            env={**stack.app_env(), **FAST_ENV, "WORKER_METRICS_PORT": str(port)},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode != 0
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert "WORKER_METRICS_PORT" in result.stderr

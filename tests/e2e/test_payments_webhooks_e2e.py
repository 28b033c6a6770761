"""Merchant webhooks end to end: the API writes events, the `moneypath worker` process relays
and delivers them to a receiver that verifies them with the `standardwebhooks` library."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.entrypoints.devstack import Stack
from tests.support.payments import (
    Merchant,
    Receiver,
    key,
    run_cli,
    wait_for,
    worker_process,
)


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Iterator[subprocess.Popen[bytes]]:
    with worker_process(stack, "payments-worker", {"WEBHOOK_TIMEOUT_S": "1"}) as process:
        yield process


@pytest.fixture(scope="module")
def db_url(stack: Stack) -> str:
    if stack.database_url is None:
        raise RuntimeError("the stack has no database")
    return stack.database_url


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _endpoint(merchant: Merchant, url: str, types: list[str]) -> dict[str, Any]:
    idem = key()
    created = merchant.client.post(
        "/v1/webhook-endpoints", json={"url": url, "event_types": types}, idempotency_key=idem
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    assert body["id"].startswith("we_")
    assert body["secret"].startswith("whsec_")
    # Shown once: a replay of the same request answers without the secret.
    replay = merchant.client.post(
        "/v1/webhook-endpoints", json={"url": url, "event_types": types}, idempotency_key=idem
    )
    assert replay.headers.get("idempotent-replayed") == "true"
    assert "secret" not in replay.json()
    return body


def _verify(secret: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    wanted = {
        name: headers[name] for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
    }
    verified: dict[str, Any] = Webhook(secret).verify(body, wanted)
    return verified


def test_receiver_verifies_events_in_order_and_a_tampered_copy_fails_when_delivered(
    merchant: Merchant, receiver: Receiver, worker: subprocess.Popen[bytes]
) -> None:
    path = "/hooks/in-order"
    endpoint = _endpoint(merchant, receiver.url + path, ["*"])
    payment = merchant.pay(1500).json()
    got = wait_for(lambda: len(receiver.at(path)) >= 2 and receiver.at(path))
    events = [_verify(endpoint["secret"], item.body, item.headers) for item in got]
    assert [event["type"] for event in events[:2]] == ["payment.authorized", "payment.captured"]
    assert all(event["data"]["payment_id"] == payment["id"] for event in events)
    assert events[1]["data"]["captured_minor"] == 1500
    assert "owner" not in events[0]["data"]
    assert got[0].headers["webhook-id"] == events[0]["id"]
    tampered = got[1].body.replace(b"1500", b"9500")
    with pytest.raises(WebhookVerificationError):
        _verify(endpoint["secret"], tampered, got[1].headers)


def test_receiver_answering_500_five_times_gets_the_event_on_attempt_6_when_retried(
    merchant: Merchant, receiver: Receiver, worker: subprocess.Popen[bytes], db_url: str
) -> None:
    path = "/hooks/flaky"
    receiver.plan(path, [500, 500, 500, 500, 500, 200])
    endpoint = _endpoint(merchant, receiver.url + path, ["payment.captured"])
    merchant.pay(1100)
    attempts = wait_for(lambda: len(receiver.at(path)) >= 6 and receiver.at(path), timeout_s=40)
    assert len({item.headers["webhook-id"] for item in attempts}) == 1
    for item in attempts:
        assert _verify(endpoint["secret"], item.body, item.headers)["type"] == "payment.captured"
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    assert gaps[-1] > gaps[0]  # the backoff grows
    with psycopg.connect(db_url) as connection:
        row = connection.execute(
            "SELECT status, attempts, last_status_code FROM payments.deliveries"
            " WHERE endpoint_id = %s",
            (endpoint["id"],),
        ).fetchone()
    assert row == ("delivered", 6, 200)


def test_receiver_that_never_answers_is_dead_lettered_and_replay_delivers_when_asked(
    stack: Stack, merchant: Merchant, receiver: Receiver, worker: subprocess.Popen[bytes]
) -> None:
    path = "/hooks/silent"
    receiver.plan(path, ["hang"])
    endpoint = _endpoint(merchant, receiver.url + path, ["payment.authorized"])
    payment = merchant.pay(1300, capture="manual").json()

    def dead() -> list[dict[str, Any]]:
        listed = run_cli(stack, "webhooks", "dead-letters")
        assert listed.returncode == 0, listed.stderr
        lines = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
        return [item for item in lines if item["endpoint_id"] == endpoint["id"]]

    (letter,) = wait_for(dead, timeout_s=90, interval_s=2)
    assert letter["attempts"] == 10
    assert len(receiver.at(path)) == 10
    receiver.plan(path, [200])
    replayed = run_cli(stack, "webhooks", "replay", str(letter["id"]))
    assert replayed.returncode == 0, replayed.stderr
    got = wait_for(lambda: len(receiver.at(path)) >= 11 and receiver.at(path)[-1])
    event = _verify(endpoint["secret"], got.body, got.headers)
    assert event["data"]["payment_id"] == payment["id"]
    assert got.headers["webhook-id"] == letter["event_id"]
    assert not dead()


def test_410_disables_the_endpoint_and_429_retry_after_is_honoured_when_answered(
    merchant: Merchant, receiver: Receiver, worker: subprocess.Popen[bytes], db_url: str
) -> None:
    gone, busy = "/hooks/gone", "/hooks/busy"
    receiver.plan(gone, [410])
    receiver.plan(busy, [(429, {"Retry-After": "2"}), 200])
    gone_endpoint = _endpoint(merchant, receiver.url + gone, ["payment.authorized"])
    _endpoint(merchant, receiver.url + busy, ["payment.authorized"])
    merchant.pay(400, capture="manual")
    pair = wait_for(lambda: len(receiver.at(busy)) >= 2 and receiver.at(busy), timeout_s=30)
    assert pair[1].at - pair[0].at >= 1.9
    merchant.pay(401, capture="manual")
    wait_for(lambda: len(receiver.at(busy)) >= 3)
    assert len(receiver.at(gone)) == 1
    with psycopg.connect(db_url) as connection:
        enabled = connection.execute(
            "SELECT enabled FROM payments.webhook_endpoints WHERE id = %s", (gone_endpoint["id"],)
        ).fetchone()
    assert enabled == (False,)

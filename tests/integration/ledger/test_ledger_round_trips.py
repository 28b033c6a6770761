"""How many statements one signed transfer sends to PostgreSQL (issue 16: the round trips
are the API's largest cost), counted from PostgreSQL's own statement log."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from app.entrypoints.devstack import Stack
from app.platform.db import PING_AFTER_IDLE_S
from tests.integration.ledger.helpers import balances, open_account, transfer
from tests.support.api_client import ClientFactory
from tests.support.round_trips import RoundTripCounter, app_through

WRITE = ["ledger:write", "ledger:read"]
# A statement as PostgreSQL logs it: simple (`statement:`) or prepared (`execute <name>:`).
STATEMENT = re.compile(r"LOG:  (?:statement|execute [^:]*): (.*)", re.DOTALL)
# Each log entry starts on a line of its own with its timestamp.
ENTRY = re.compile(r"\n(?=\d{4}-\d\d-\d\d )")
# A log entry's backend: `2026-12-02 00:35:09.080 UTC [24798] LOG: ...`.
BACKEND = re.compile(r"\s*\d{4}-\d\d-\d\d \S+ \S+ \[(\d+)\]")


@pytest.fixture(scope="module")
def client(client_factory: Any) -> Any:
    return client_factory(scopes=WRITE)


def _log_statements(database_url: str, value: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f"ALTER SYSTEM SET log_statement = '{value}'")
        connection.execute("SELECT pg_reload_conf()")
    # An idle backend applies a reload only after the next command it reads, so the API's
    # pooled connections would run one more statement unlogged. Waiting past the pool's
    # idle threshold makes the pool ping each one first (db.py), and the ping (filtered
    # out below) is that command.
    time.sleep(PING_AFTER_IDLE_S + 0.5)


def _statements_of(stack: Stack, action: Any) -> list[str]:
    assert stack.database_url is not None
    log_path = stack.log_path("postgres")
    start = log_path.stat().st_size
    marker = secrets.token_hex(8)
    _log_statements(stack.database_url, "all")
    try:
        with psycopg.connect(stack.database_url, autocommit=True) as connection:
            connection.execute(f"SELECT 'start-{marker}'")
        action()
        with psycopg.connect(stack.database_url, autocommit=True) as connection:
            connection.execute(f"SELECT 'end-{marker}'")
    finally:
        _log_statements(stack.database_url, "none")
    with log_path.open("rb") as log:
        log.seek(start)
        text = log.read().decode(errors="replace")
    # Cut at the markers' own log entries: what lies between is the action's alone.
    window = text.split(f"start-{marker}", 1)[-1].split(f"end-{marker}", 1)[0]
    window = window.rsplit("\n", 1)[0] if f"end-{marker}" in text else window
    logged = [(BACKEND.match(entry), STATEMENT.search(entry)) for entry in ENTRY.split(window)]
    by_backend = [
        (backend.group(1) if backend else "", match.group(1).strip())
        for backend, match in logged
        if match is not None
    ]
    # Another service's backends are not the transfer's either: the evidence service reads
    # its checkpoints (schema `evidence`, its own database) whenever it likes, with a
    # BEGIN and COMMIT of its own, so all of such a backend's lines go.
    others = {pid for pid, statement in by_backend if "evidence." in statement}
    statements = [statement for pid, statement in by_backend if pid not in others]
    # Not the transfer's own: the ping of a pooled connection that sat idle (db.py), the
    # failure limiter's look-up, sent only while this address has recent 401s (other
    # tests of the session make some), and the expired-nonce clean-up an API process runs
    # at most every NONCE_CLEANUP_INTERVAL_S, with whichever signed request comes next.
    return [
        s
        for s in statements
        if s != ";"
        and "platform.auth_failures" not in s
        and "DELETE FROM platform.seen_nonces" not in s
    ]


def test_one_statement_admits_a_signed_transfer_when_its_key_is_new(
    client: Any, stack: Stack
) -> None:
    source = open_account(client, overdraft_limit_minor=None)["id"]
    target = open_account(client)["id"]
    client.token()  # the token request is not the transfer's
    responses: list[Any] = []
    statements = _statements_of(
        stack, lambda: responses.append(transfer(client, source, target, 5))
    )
    assert responses[0].status_code == 201, responses[0].text
    # is_active, the nonce and the Idempotency-Key claim: one statement, before BEGIN.
    before_effect = statements[: statements.index("BEGIN")]
    assert len(before_effect) == 1, before_effect
    admission = before_effect[0]
    for table in ("platform.seen_nonces", "platform.idempotency_keys", "identity.key_is_active"):
        assert table in admission
    # The effect: BEGIN, the transaction rows, one statement for the idempotency
    # completion, the audit record and the outbox event, the locks, balance rules and
    # chain append (ledger.apply_entries) and COMMIT.
    assert not any(s.startswith("INSERT INTO platform.outbox") for s in statements), statements
    assert len(statements) <= 6, statements


def _key_rows(stack: Stack, client_id: str, key: str) -> int:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM platform.idempotency_keys WHERE client_id = %s AND key = %s",
            (client_id, key),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _nonce_rows(stack: Stack, key_id: str) -> int:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM platform.seen_nonces WHERE key_id = %s", (key_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def _account_body() -> dict[str, Any]:
    return {"code": secrets.token_hex(6), "currency": "USD", "normal_balance": "credit"}


def test_a_signed_write_burns_no_nonce_and_claims_no_key_when_its_client_is_disabled(
    client_factory: Any, stack: Stack
) -> None:
    admin = client_factory(scopes=["clients:admin"])
    writer = client_factory(scopes=WRITE)
    writer.token()  # still unexpired after the client is disabled
    nonces = _nonce_rows(stack, writer.key_id)
    disabled = admin.post(
        f"/v1/clients/{writer.client_id}/disable", idempotency_key=secrets.token_hex(8)
    )
    assert disabled.status_code == 200, disabled.text
    key = secrets.token_hex(8)
    refused = writer.post("/v1/ledger/accounts", json=_account_body(), idempotency_key=key)
    assert refused.status_code == 401
    assert refused.json()["code"] == "unauthorized"
    assert _key_rows(stack, writer.client_id, key) == 0
    assert _nonce_rows(stack, writer.key_id) == nonces


def test_a_policy_refusal_leaves_the_key_free_when_it_was_claimed_with_the_nonce(
    client_factory: Any, stack: Stack
) -> None:
    reader = client_factory(scopes=["ledger:read"])
    key = secrets.token_hex(8)
    refused = reader.post("/v1/ledger/accounts", json=_account_body(), idempotency_key=key)
    assert refused.status_code == 403, refused.text
    assert _key_rows(stack, reader.client_id, key) == 0


@pytest.fixture(scope="module")
def counted(stack: Stack) -> Iterator[tuple[RoundTripCounter, ClientFactory]]:
    """An in-process API whose every database connection goes through a turn counter.

    Its own client address, so no other test's 401s make the failure limiter look up
    this one's (a round trip that is not the transfer's)."""
    assert stack.database_url is not None
    app, counter, base_url = app_through(stack)
    try:
        with TestClient(app, base_url=base_url, client=("192.0.2.16", 50000)) as http:
            yield counter, ClientFactory(stack.database_url, http)
    finally:
        counter.close()


def _warm_pair(factory: ClientFactory) -> tuple[Any, str, str]:
    """A writing client, a funding account and a target, after one transfer between them:
    pooled connections open, token fetched, statements prepared."""
    client = factory(scopes=WRITE)
    source = open_account(client, overdraft_limit_minor=None)["id"]
    target = open_account(client)["id"]
    assert transfer(client, source, target, 1).status_code == 201
    return client, source, target


def test_a_signed_transfer_takes_three_round_trips_when_its_key_is_new(
    counted: tuple[RoundTripCounter, ClientFactory],
) -> None:
    counter, factory = counted
    client, source, target = _warm_pair(factory)
    with counter.counting() as turns:
        response = transfer(client, source, target, 5)
    assert response.status_code == 201, response.text
    # The admission statement; BEGIN with the transaction rows and account locks; the
    # completion, audit, outbox and chain append sent with COMMIT.
    assert turns[0] <= 3, turns
    assert balances(client, target)["posted"] == 6


def test_each_round_trip_of_a_signed_transfer_is_one_write_when_its_key_is_new(
    counted: tuple[RoundTripCounter, ClientFactory],
) -> None:
    counter, factory = counted
    client, source, target = _warm_pair(factory)
    with counter.counting_writes() as counted_writes:
        response = transfer(client, source, target, 5)
    assert response.status_code == 201, response.text
    turns, writes = counted_writes
    # BEGIN, the transaction rows, the completion, ledger.apply_entries and COMMIT leave
    # in one write (db_wire), not one packet each: every turn is a single write.
    assert writes == turns, counted_writes
    assert balances(client, target)["posted"] == 6

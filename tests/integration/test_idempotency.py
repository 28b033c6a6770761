"""Idempotency-Key (app/platform/idempotency.py + the web pipeline), proven on ledger POSTs."""

from __future__ import annotations

import asyncio
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from app.entrypoints import worker
from app.entrypoints.devstack import Stack
from app.platform import idempotency
from app.platform.db import create_engine, session_factory
from app.platform.settings import Settings
from tests.integration.ledger.helpers import balances, key, leg, open_account

ROUTE = "/v1/ledger/transactions"


@pytest.fixture(scope="module")
def client(client_factory: Any) -> Any:
    return client_factory(scopes=["ledger:write", "ledger:read"])


@pytest.fixture
def accounts(client: Any) -> tuple[str, str]:
    source = open_account(client, overdraft_limit_minor=None)["id"]
    target = open_account(client)["id"]
    return source, target


def _body(source: str, target: str, amount: int, ref: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "posted",
        "postings": [leg(source, "debit", amount), leg(target, "credit", amount)],
    }
    if ref is not None:
        body["external_ref"] = ref
    return body


def _raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def _db(stack: Stack) -> psycopg.Connection[Any]:
    assert stack.database_url is not None
    return psycopg.connect(stack.database_url, autocommit=True)


def _transactions_with_ref(stack: Stack, ref: str) -> int:
    with _db(stack) as connection:
        row = connection.execute(
            "SELECT count(*) FROM ledger.transactions WHERE external_ref = %s", (ref,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def _post_raw(client: Any, raw: bytes, idempotency_key: str | None) -> Any:
    return client.post(
        ROUTE,
        content=raw,
        idempotency_key=idempotency_key,
        headers={"Content-Type": "application/json"},
    )


def test_replay_returns_the_stored_response_with_the_replayed_header_and_one_effect(
    client: Any, accounts: tuple[str, str], stack: Stack
) -> None:
    source, target = accounts
    ref = key()
    raw = _raw(_body(source, target, 250, ref))
    the_key = key()
    first = _post_raw(client, raw, the_key)
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    second = _post_raw(client, raw, the_key)
    assert second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()
    assert _transactions_with_ref(stack, ref) == 1
    assert balances(client, target)["posted"] == 250


def test_business_refusal_is_stored_and_replayed(client: Any, accounts: tuple[str, str]) -> None:
    source, target = accounts
    the_key = key()
    raw = _raw(_body(target, source, 10))  # the target holds nothing: insufficient funds
    first = _post_raw(client, raw, the_key)
    assert first.status_code == 422
    assert first.json()["code"] == "insufficient_funds"
    # Fund the account: a replay must still give the stored answer, not re-execute.
    assert _post_raw(client, _raw(_body(source, target, 50)), key()).status_code == 201
    second = _post_raw(client, raw, the_key)
    assert second.status_code == 422
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json()["code"] == "insufficient_funds"
    assert balances(client, target)["posted"] == 50


def test_reused_key_with_a_different_body_is_422_idempotency_key_reused(
    client: Any, accounts: tuple[str, str], stack: Stack
) -> None:
    source, target = accounts
    the_key = key()
    assert _post_raw(client, _raw(_body(source, target, 5)), the_key).status_code == 201
    ref = key()
    reused = _post_raw(client, _raw(_body(source, target, 6, ref)), the_key)
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    assert _transactions_with_ref(stack, ref) == 0
    assert balances(client, target)["posted"] == 5


def test_missing_key_is_400_idempotency_key_required_and_nothing_is_written(
    client: Any, accounts: tuple[str, str], stack: Stack
) -> None:
    source, target = accounts
    ref = key()
    response = _post_raw(client, _raw(_body(source, target, 5, ref)), None)
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_required"
    assert _transactions_with_ref(stack, ref) == 0


def test_validation_failure_is_not_stored_so_the_key_can_be_used_again(
    client: Any, accounts: tuple[str, str]
) -> None:
    source, target = accounts
    the_key = key()
    bad = _body(source, target, 5)
    bad["postings"][0]["amount_minor"] = 5.5
    assert _post_raw(client, _raw(bad), the_key).json()["code"] == "validation_error"
    good = _post_raw(client, _raw(_body(source, target, 5)), the_key)
    assert good.status_code == 201


def test_in_progress_key_is_409_with_retry_after(
    client: Any, accounts: tuple[str, str], stack: Stack
) -> None:
    source, target = accounts
    ref = key()
    raw = _raw(_body(source, target, 7, ref))
    the_key = key()
    with _db(stack) as connection:
        connection.execute(
            """
            INSERT INTO platform.idempotency_keys
                (client_id, method, path, key, fingerprint, status, claim_token,
                 locked_until, expires_at)
            VALUES (%s, 'POST', %s, %s, %s, 'in_progress', 'someone-else',
                    now() + interval '30 seconds', now() + interval '1 day')
            """,
            (client.client_id, ROUTE, the_key, hashlib.sha256(raw).hexdigest()),
        )
    response = _post_raw(client, raw, the_key)
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_in_use"
    assert 1 <= int(response.headers["retry-after"]) <= 30
    assert _transactions_with_ref(stack, ref) == 0


def test_stale_in_progress_claim_is_taken_over_and_executes_once(
    client: Any, accounts: tuple[str, str], stack: Stack
) -> None:
    source, target = accounts
    ref = key()
    raw = _raw(_body(source, target, 9, ref))
    the_key = key()
    with _db(stack) as connection:
        connection.execute(
            """
            INSERT INTO platform.idempotency_keys
                (client_id, method, path, key, fingerprint, status, claim_token,
                 locked_until, expires_at)
            VALUES (%s, 'POST', %s, %s, %s, 'in_progress', 'crashed-worker',
                    now() - interval '1 second', now() + interval '1 day')
            """,
            (client.client_id, ROUTE, the_key, hashlib.sha256(raw).hexdigest()),
        )
    response = _post_raw(client, raw, the_key)
    assert response.status_code == 201, response.text
    assert _post_raw(client, raw, the_key).headers["idempotent-replayed"] == "true"
    assert _transactions_with_ref(stack, ref) == 1


def test_twenty_concurrent_identical_requests_have_exactly_one_effect(
    client: Any, accounts: tuple[str, str], stack: Stack
) -> None:
    source, target = accounts
    ref = key()
    raw = _raw(_body(source, target, 100, ref))
    the_key = key()
    client.get(f"/v1/ledger/accounts/{target}")  # fetch the token before the threads race
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda _: _post_raw(client, raw, the_key), range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    assert 201 in statuses
    created = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(created) == 1
    for response in responses:
        if response.status_code == 409:
            assert response.json()["code"] == "idempotency_key_in_use"
            assert "retry-after" in response.headers
    assert _transactions_with_ref(stack, ref) == 1
    assert balances(client, target)["posted"] == 100
    replay = _post_raw(client, raw, the_key)
    assert replay.status_code == 201
    assert replay.json()["id"] in created


def test_keys_live_24_hours_then_count_as_new_and_the_worker_deletes_them(
    client: Any, accounts: tuple[str, str], stack: Stack, settings: Settings
) -> None:
    source, target = accounts
    the_key = key()
    assert _post_raw(client, _raw(_body(source, target, 3)), the_key).status_code == 201
    with _db(stack) as connection:
        row = connection.execute(
            "SELECT expires_at - created_at FROM platform.idempotency_keys"
            " WHERE client_id = %s AND key = %s",
            (client.client_id, the_key),
        ).fetchone()
        assert row is not None
        assert row[0].total_seconds() == settings.idempotency_ttl_s == 86_400
        connection.execute(
            "UPDATE platform.idempotency_keys SET expires_at = now() - interval '1 second'"
            " WHERE client_id = %s AND key = %s",
            (client.client_id, the_key),
        )
    # Expired but not yet cleaned up: the key is free, even for a different body.
    assert _post_raw(client, _raw(_body(source, target, 4)), the_key).status_code == 201
    with _db(stack) as connection:
        connection.execute(
            "UPDATE platform.idempotency_keys SET expires_at = now() - interval '1 second'"
            " WHERE client_id = %s AND key = %s",
            (client.client_id, the_key),
        )
    report = asyncio.run(worker.run_once(settings))
    assert report.idempotency_keys_deleted >= 1
    with _db(stack) as connection:
        left = connection.execute(
            "SELECT count(*) FROM platform.idempotency_keys WHERE client_id = %s AND key = %s",
            (client.client_id, the_key),
        ).fetchone()
    assert left == (0,)
    assert balances(client, target)["posted"] == 7


def test_claim_succeeds_when_the_conflicting_row_is_deleted_before_it_can_be_locked(
    stack: Stack,
) -> None:
    """Regression: claim() used `.one()` after the conflict and crashed with a 500."""
    assert stack.database_url is not None
    arguments = {
        "client_id": "cli_race",
        "method": "POST",
        "path": ROUTE,
        "key": key(),
        "body_fingerprint": "f" * 64,
        "ttl_s": 86_400,
        "stale_claim_s": 60,
    }

    async def scenario() -> object:
        engine = create_engine(str(stack.database_url), pool_size=3)
        sessions = session_factory(engine)
        try:
            async with sessions() as session, session.begin():
                assert isinstance(await idempotency.claim(session, **arguments), idempotency.Claim)
            async with sessions() as locker:
                await locker.begin()
                await locker.execute(
                    text(
                        "SELECT 1 FROM platform.idempotency_keys"
                        " WHERE client_id = 'cli_race' AND key = :key FOR UPDATE"
                    ),
                    {"key": arguments["key"]},
                )

                async def contend() -> object:
                    async with sessions() as session, session.begin():
                        return await idempotency.claim(session, **arguments)

                contender = asyncio.create_task(contend())
                await asyncio.sleep(0.5)  # it conflicts, then waits on our row lock
                assert not contender.done()
                await locker.execute(
                    text(
                        "DELETE FROM platform.idempotency_keys"
                        " WHERE client_id = 'cli_race' AND key = :key"
                    ),
                    {"key": arguments["key"]},
                )
                await locker.commit()
                return await asyncio.wait_for(contender, timeout=10)
        finally:
            await engine.dispose()

    assert isinstance(asyncio.run(scenario()), idempotency.Claim)

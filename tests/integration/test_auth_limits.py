"""Issue 10 item 7: failed authentications are bounded per client id and per source
address (429 rate_limited with Retry-After), and a flood is audited as counted
summaries, not one row per attempt."""

from __future__ import annotations

import asyncio
import secrets

import psycopg
from starlette.testclient import TestClient

from app.entrypoints.devstack import Stack
from app.platform import auth_limits
from app.platform.db import create_engine, libpq_url, session_factory
from tests.support.api_client import ClientFactory


def _from(api: TestClient, address: str) -> TestClient:
    """The same in-process app, seen from another source address."""
    return TestClient(api.app, base_url=str(api.base_url), client=(address, 40000))


def _count(stack: Stack, sql: str, *args: object) -> int:
    assert stack.database_url is not None
    with psycopg.connect(libpq_url(stack.database_url)) as connection:
        row = connection.execute(sql, args).fetchone()
    assert row is not None
    return int(row[0])


def _flush(stack: Stack) -> int:
    """What the worker does each cycle, with windows that ended a second ago."""
    assert stack.database_url is not None
    engine = create_engine(stack.database_url, pool_size=1)

    async def flush() -> int:
        try:
            async with session_factory(engine)() as session, session.begin():
                return await auth_limits.flush_finished_windows(session, window_s=1)
        finally:
            await engine.dispose()

    return asyncio.run(flush())


def test_token_burst_for_one_client_gets_429_with_retry_after_after_the_limit(
    api: TestClient, stack: Stack, client_factory: ClientFactory
) -> None:
    client = client_factory(scopes=["ledger:read"])
    http = _from(api, f"198.51.100.{secrets.randbelow(200) + 1}")
    form = {
        "grant_type": "client_credentials",
        "client_id": client.client_id,
        "client_secret": "wrong",
    }
    statuses = [
        http.post("/v1/oauth/token", data=form).status_code
        for _ in range(auth_limits.FAILURES_PER_CLIENT + 5)
    ]
    assert statuses[: auth_limits.FAILURES_PER_CLIENT] == [401] * auth_limits.FAILURES_PER_CLIENT
    assert statuses[auth_limits.FAILURES_PER_CLIENT :] == [429] * 5
    limited = http.post("/v1/oauth/token", data=form)
    assert limited.status_code == 429
    assert limited.json()["error"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= auth_limits.WINDOW_S
    # Even the right secret waits: the limit is on the client id, before scrypt runs.
    right = http.post("/v1/oauth/token", data={**form, "client_secret": client.client_secret})
    assert right.status_code == 429
    # Only the attempts below the limit were audited one by one.
    rows = _count(
        stack,
        "SELECT count(*) FROM platform.audit_log WHERE event_type = 'oauth.token' "
        "AND actor = %s AND outcome = 'failure'",
        client.client_id,
    )
    assert rows == auth_limits.FAILURES_PER_CLIENT
    # The refused attempts become one counted summary once the window is over.
    assert _flush(stack) >= 1
    summary = _count(
        stack,
        "SELECT (details->>'refused_attempts')::int FROM platform.audit_log "
        "WHERE event_type = 'auth.rate_limited' AND actor = %s",
        client.client_id,
    )
    assert summary == 7


def test_bad_bearer_burst_from_one_address_gets_429_and_stops_writing_rows(
    api: TestClient, stack: Stack
) -> None:
    address = f"203.0.113.{secrets.randbelow(200) + 1}"
    http = _from(api, address)
    headers = {"Authorization": "Bearer not-a-token"}
    limit = auth_limits.FAILURES_PER_ADDRESS
    statuses = [
        http.get("/v1/ledger/verify", headers=headers).status_code for _ in range(limit + 20)
    ]
    assert statuses[:limit] == [401] * limit
    assert statuses[limit:] == [429] * 20
    limited = http.get("/v1/ledger/verify", headers=headers)
    assert limited.json()["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    rows = _count(stack, "SELECT count(*) FROM platform.audit_log WHERE origin_ip = %s", address)
    assert rows == limit
    # Another address is not affected.
    other = _from(api, "192.0.2.77").get("/v1/ledger/verify", headers=headers)
    assert other.status_code == 401

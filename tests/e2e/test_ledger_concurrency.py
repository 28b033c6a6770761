"""8 threads x 100 random transfers among 3 hot accounts, against the API under uvicorn."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from app.entrypoints.devstack import Stack
from tests.integration.ledger.helpers import balances, open_account, transfer

THREADS = 8
TRANSFERS_PER_THREAD = 100
START_MINOR = 5_000
LIMITS = (0, 0, 1_000)


def _entries(client: Any, account_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(100):  # bounded: at most 20_000 entries
        params: dict[str, Any] = {"limit": 200}
        if cursor is not None:
            params["cursor"] = cursor
        page = client.get(f"/v1/ledger/accounts/{account_id}/entries", params=params).json()
        entries.extend(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return entries
    raise AssertionError("too many entries")


def test_random_transfers_among_hot_accounts_keep_every_invariant_and_no_5xx(
    live_stack: Stack, client_factory: Any
) -> None:
    clients = [
        client_factory(
            scopes=["ledger:write", "ledger:read"],
            http=httpx.Client(base_url=live_stack.api_url, timeout=30),
        )
        for _ in range(THREADS)
    ]
    admin = clients[0]
    source = open_account(admin, overdraft_limit_minor=None)["id"]
    hot = [open_account(admin, overdraft_limit_minor=limit)["id"] for limit in LIMITS]
    for account_id in hot:
        assert transfer(admin, source, account_id, START_MINOR).status_code == 201

    def run(thread: int) -> list[tuple[int, str, str, int, str | None]]:
        client = clients[thread]
        chooser = random.Random(thread)
        outcomes: list[tuple[int, str, str, int, str | None]] = []
        for _ in range(TRANSFERS_PER_THREAD):
            src, dst = chooser.sample(hot, 2)
            amount = chooser.randint(1, 1_500)
            response = transfer(client, src, dst, amount)
            problem = response.json().get("code") if response.status_code >= 400 else None
            outcomes.append((response.status_code, src, dst, amount, problem))
        return outcomes

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = [item for batch in pool.map(run, range(THREADS)) for item in batch]

    statuses = [status for status, *_ in results]
    assert not [s for s in statuses if s >= 500], "a client saw a 5xx"
    assert {(s, p) for s, _, _, _, p in results} <= {(201, None), (422, "insufficient_funds")}
    assert statuses.count(201) > len(results) // 4  # the run did move money

    expected = dict.fromkeys(hot, START_MINOR)
    for status, src, dst, amount, _ in results:
        if status == 201:
            expected[src] -= amount
            expected[dst] += amount
    # No lost update: every acknowledged transfer is in the balances, and nothing else.
    for account_id, limit in zip(hot, LIMITS, strict=True):
        current = balances(admin, account_id)
        assert current["posted"] == expected[account_id]
        assert current["available"] >= -limit
    assert sum(expected.values()) == 3 * START_MINOR

    # Each account's entries form one linear history: every running balance follows from
    # the one before it, so no two writers interleaved on a stale balance.
    for account_id in hot:
        running = 0
        for entry in _entries(admin, account_id):
            delta = (
                entry["amount_minor"] if entry["direction"] == "credit" else -entry["amount_minor"]
            )
            running += delta
            assert entry["balance_after_minor"] == running
        assert running == expected[account_id]

    report = admin.get("/v1/ledger/verify").json()
    assert report["ok"] is True, report
    for client in clients:
        client.http.close()

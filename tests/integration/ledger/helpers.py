"""Small request builders shared by the ledger tests."""

from __future__ import annotations

import secrets
from typing import Any

import httpx


def key() -> str:
    return "idem-" + secrets.token_hex(12)


def code(prefix: str = "acct") -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def open_account(
    client: Any,
    *,
    currency: str = "USD",
    normal_balance: str = "credit",
    overdraft_limit_minor: int | None = 0,
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "code": code(),
        "currency": currency,
        "normal_balance": normal_balance,
        "overdraft_limit_minor": overdraft_limit_minor,
        **extra,
    }
    response = client.post("/v1/ledger/accounts", json=body, idempotency_key=key())
    assert response.status_code == 201, response.text
    account: dict[str, Any] = response.json()
    return account


def leg(
    account_id: str, direction: str, amount_minor: int, currency: str = "USD"
) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "direction": direction,
        "amount_minor": amount_minor,
        "currency": currency,
    }


def transfer(
    client: Any,
    source: str,
    target: str,
    amount_minor: int,
    *,
    currency: str = "USD",
    status: str = "posted",
    **extra: Any,
) -> httpx.Response:
    """Move money from `source` to `target` (both credit-normal): debit source, credit target."""
    body = {
        "postings": [
            leg(source, "debit", amount_minor, currency),
            leg(target, "credit", amount_minor, currency),
        ],
        "status": status,
        **extra,
    }
    response: httpx.Response = client.post(
        "/v1/ledger/transactions", json=body, idempotency_key=key()
    )
    return response


def balances(client: Any, account_id: str, **params: str) -> dict[str, int]:
    response = client.get(f"/v1/ledger/accounts/{account_id}", params=params)
    assert response.status_code == 200, response.text
    result: dict[str, int] = response.json()["balances"]
    return result

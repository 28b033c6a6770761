"""Property: random sequences of valid and invalid ledger requests keep the books right.

Hypothesis drives the real API (signed requests, real PostgreSQL) with transfers (posted
or pending, some deliberately broken), posts (full and partial) and voids, and checks
after every step against a small model:
- each answer is the one the model predicts (201/200, or the exact problem code);
- a refused request leaves no trace (no posting, transaction or journal entry);
and at the end:
- debits equal credits in every currency, for posted amounts and for holds;
- no account sits past its overdraft limit; balances equal the model's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.entrypoints.devstack import Stack
from tests.integration.ledger.helpers import key, leg, open_account

# (currency, normal balance, overdraft limit); None = unlimited (the funding accounts).
ACCOUNTS = (
    ("USD", "credit", None),
    ("USD", "credit", 0),
    ("USD", "credit", 100),
    ("USD", "debit", 50),
    ("EUR", "credit", None),
    ("EUR", "credit", 0),
)
MUTATIONS = (
    None,
    None,
    None,
    "unbalanced",
    "mismatch",
    "unknown_currency",
    "unknown_account",
    "float",
    "string",
    "zero",
    "bool",
)

transfer_ops = st.tuples(
    st.just("transfer"),
    st.integers(0, len(ACCOUNTS) - 1),
    st.integers(0, len(ACCOUNTS) - 1),
    st.integers(1, 400),
    st.sampled_from(["posted", "posted", "pending"]),
    st.sampled_from(MUTATIONS),
)
resolve_ops = st.tuples(
    st.sampled_from(["post", "void"]),
    st.integers(0, 50),
    st.one_of(st.none(), st.integers(1, 400)),
)
operations = st.lists(st.one_of(transfer_ops, resolve_ops), min_size=1, max_size=12)


@dataclass
class Model:
    ids: list[str]
    posted: list[int] = field(default_factory=lambda: [0] * len(ACCOUNTS))
    pending_debits: list[int] = field(default_factory=lambda: [0] * len(ACCOUNTS))
    pending_credits: list[int] = field(default_factory=lambda: [0] * len(ACCOUNTS))
    holds: list[dict[str, Any]] = field(default_factory=list)
    accepted_transactions: int = 0

    def available(self, index: int) -> int:
        reducing = (
            self.pending_debits[index]
            if ACCOUNTS[index][1] == "credit"
            else self.pending_credits[index]
        )
        return self.posted[index] - reducing

    def signed(self, index: int, direction: str, amount: int) -> int:
        return amount if ACCOUNTS[index][1] == direction else -amount

    def try_transfer(self, src: int, dst: int, amount: int, status: str) -> bool:
        """Apply a valid debit-src/credit-dst transfer if no account is overdrawn."""
        before = [self.available(src), self.available(dst)]
        saved = (list(self.posted), list(self.pending_debits), list(self.pending_credits))
        if status == "posted":
            self.posted[src] += self.signed(src, "debit", amount)
            self.posted[dst] += self.signed(dst, "credit", amount)
        else:
            self.pending_debits[src] += amount
            self.pending_credits[dst] += amount
        for index, old in zip((src, dst), before, strict=True):
            limit = ACCOUNTS[index][2]
            new = self.available(index)
            if limit is not None and new < old and new < -limit:
                self.posted, self.pending_debits, self.pending_credits = saved
                return False
        return True


def _counts(stack: Stack) -> tuple[int, int, int]:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT (SELECT count(*) FROM ledger.postings),"
            " (SELECT count(*) FROM ledger.transactions),"
            " (SELECT count(*) FROM ledger.journal_entries)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def _mutated_body(
    model: Model, src: int, dst: int, amount: int, status: str, mutation: str | None
) -> tuple[dict[str, Any], int, str | None]:
    currency = ACCOUNTS[src][0]
    legs = [
        leg(model.ids[src], "debit", amount, currency),
        leg(model.ids[dst], "credit", amount, currency),
    ]
    body: dict[str, Any] = {"status": status, "postings": legs}
    if status == "pending":
        body["expires_at"] = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    if mutation == "unbalanced":
        legs[1]["amount_minor"] = amount + 1
        return body, 422, "unbalanced_transaction"
    if mutation == "mismatch":
        other = "EUR" if currency == "USD" else "USD"
        legs[0]["currency"] = legs[1]["currency"] = other
        return body, 422, "currency_mismatch"
    if mutation == "unknown_currency":
        legs[0]["currency"] = legs[1]["currency"] = "QQQ"
        return body, 422, "unknown_currency"
    if mutation == "unknown_account":
        legs[0]["account_id"] = "acc_" + secrets.token_hex(12)
        return body, 422, "unknown_account"
    bad_amounts: dict[str, Any] = {
        "float": amount + 0.5,
        "string": str(amount),
        "zero": 0,
        "bool": True,
    }
    if mutation in bad_amounts:
        legs[0]["amount_minor"] = legs[1]["amount_minor"] = bad_amounts[mutation]
        return body, 422, "validation_error"
    return body, 201, None


@pytest.fixture(scope="module")
def client(client_factory: Any) -> Any:
    return client_factory(scopes=["ledger:write", "ledger:read"])


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=operations)
def test_random_request_sequences_keep_books_balanced_and_within_limits(
    client: Any, stack: Stack, ops: list[tuple[Any, ...]]
) -> None:
    ids = [
        open_account(client, currency=currency, normal_balance=normal, overdraft_limit_minor=limit)[
            "id"
        ]
        for currency, normal, limit in ACCOUNTS
    ]
    model = Model(ids=ids)
    for op in ops:
        before = _counts(stack)
        if op[0] == "transfer":
            _, src, dst, amount, status, mutation = op
            if ACCOUNTS[src][0] != ACCOUNTS[dst][0]:
                dst = next(
                    i for i, a in enumerate(ACCOUNTS) if a[0] == ACCOUNTS[src][0] and i != src
                )
            if src == dst:
                continue
            body, status_code, problem = _mutated_body(model, src, dst, amount, status, mutation)
            if problem is None and not model.try_transfer(src, dst, amount, status):
                status_code, problem = 422, "insufficient_funds"
            response = client.post("/v1/ledger/transactions", json=body, idempotency_key=key())
            if problem is None and status == "pending":
                model.holds.append(
                    {"id": response.json().get("id"), "src": src, "dst": dst, "amount": amount}
                )
        else:
            action, pick, partial = op
            if not model.holds:
                continue
            hold = model.holds[pick % len(model.holds)]
            payload = None
            status_code, problem = 200, None
            if hold.get("state") is not None:
                status_code, problem = 409, "invalid_state"
            elif action == "post" and partial is not None:
                payload = {"amount_minor": partial}
                if partial > hold["amount"]:
                    status_code, problem = 422, "validation_error"
            if problem is None:
                src, dst, amount = hold["src"], hold["dst"], hold["amount"]
                model.pending_debits[src] -= amount
                model.pending_credits[dst] -= amount
                if action == "post":
                    posted = amount if partial is None else partial
                    model.posted[src] += model.signed(src, "debit", posted)
                    model.posted[dst] += model.signed(dst, "credit", posted)
                hold["state"] = action
            response = client.post(
                f"/v1/ledger/transactions/{hold['id']}/{action}",
                json=payload,
                idempotency_key=key(),
            )
        assert response.status_code == status_code, (op, response.text)
        if problem is not None:
            assert response.json()["code"] == problem, (op, response.text)
            assert _counts(stack) == before, f"refused {op} left a trace"
        elif op[0] == "transfer":
            model.accepted_transactions += 1

    for index, account_id in enumerate(ids):
        current = client.get(f"/v1/ledger/accounts/{account_id}").json()["balances"]
        assert current == {
            "posted": model.posted[index],
            "pending_debits": model.pending_debits[index],
            "pending_credits": model.pending_credits[index],
            "available": model.available(index),
        }
        limit = ACCOUNTS[index][2]
        if limit is not None:
            assert current["available"] >= -limit

    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        sums = connection.execute(
            """
            SELECT currency, effect,
                   sum(CASE WHEN direction = 'debit' THEN amount_minor ELSE 0 END),
                   sum(CASE WHEN direction = 'credit' THEN amount_minor ELSE 0 END)
            FROM ledger.postings WHERE account_id = ANY(%s)
            GROUP BY currency, effect
            """,
            (ids,),
        ).fetchall()
        transactions = connection.execute(
            "SELECT count(DISTINCT transaction_id) FROM ledger.postings WHERE account_id = ANY(%s)",
            (ids,),
        ).fetchone()
    for currency, effect, debits, credits in sums:
        assert debits == credits, f"{currency} {effect}: debits {debits} != credits {credits}"
    assert transactions == (model.accepted_transactions,)

"""Rows of the payments schema: payments, saga steps, refunds, payouts, clearing accounts.

Plain SQL over the caller's session, so every write joins the caller's transaction (and
with it the ledger posting and the outbox event of the same step).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger import api as ledger_api
from app.payments.domain import STEP_NAMES, PaymentNotFoundError, PaymentStatus
from app.platform.errors import InvariantViolation
from app.platform.utc import rfc3339_or_none


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def iso(moment: datetime | None) -> str | None:
    return rfc3339_or_none(moment)


@dataclass(frozen=True, slots=True)
class PaymentRow:
    id: str
    owner: str
    request_key: str
    customer_id: str
    merchant_account_id: str
    amount_minor: int
    currency: str
    capture_mode: str
    token: str
    status: PaymentStatus
    provider: str | None
    provider_ref: str | None
    route_rule: str | None
    hold_transaction_id: str | None
    captured_minor: int
    refunded_minor: int
    ledger_transaction_ids: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StepRow:
    id: int
    saga_id: str
    name: str
    status: str
    attempts: int
    provider: str | None
    provider_ref: str | None
    provider_key: str | None
    amount_minor: int | None
    subject_id: str | None
    detail: Mapping[str, Any]
    started_at: datetime
    finished_at: datetime | None
    updated_at: datetime


_PAYMENT_COLUMNS = (
    "id, owner, request_key, customer_id, merchant_account_id, amount_minor, currency, "
    "capture_mode, token, status, provider, provider_ref, route_rule, hold_transaction_id, "
    "captured_minor, refunded_minor, ledger_transaction_ids, created_at, updated_at"
)
_STEP_COLUMNS = (
    "id, saga_id, name, status, attempts, provider, provider_ref, provider_key, amount_minor, "
    "subject_id, detail, started_at, finished_at, updated_at"
)


def _payment(row: Any) -> PaymentRow:
    values = dict(row._mapping)
    values["status"] = PaymentStatus(values["status"])
    values["ledger_transaction_ids"] = tuple(values["ledger_transaction_ids"] or ())
    return PaymentRow(**values)


def _step(row: Any) -> StepRow:
    return StepRow(**dict(row._mapping))


async def insert_payment(session: AsyncSession, **values: Any) -> None:
    columns = ", ".join(values)
    params = ", ".join(f":{name}" for name in values)
    await session.execute(
        text(f"INSERT INTO payments.payments ({columns}) VALUES ({params})"),  # noqa: S608
        values,
    )


async def find_payment(
    session: AsyncSession, payment_id: str, *, lock: bool = False
) -> PaymentRow | None:
    sql = f"SELECT {_PAYMENT_COLUMNS} FROM payments.payments WHERE id = :id"  # noqa: S608
    row = (
        await session.execute(text(sql + (" FOR UPDATE" if lock else "")), {"id": payment_id})
    ).first()
    return _payment(row) if row is not None else None


async def get_payment(session: AsyncSession, payment_id: str, *, lock: bool = False) -> PaymentRow:
    found = await find_payment(session, payment_id, lock=lock)
    if found is None:
        raise PaymentNotFoundError(f"no payment {payment_id}")
    return found


async def payment_by_request(
    session: AsyncSession, owner: str, request_key: str
) -> PaymentRow | None:
    sql = (
        f"SELECT {_PAYMENT_COLUMNS} FROM payments.payments"  # noqa: S608
        " WHERE owner = :owner AND request_key = :key"
    )
    row = (await session.execute(text(sql), {"owner": owner, "key": request_key})).first()
    return _payment(row) if row is not None else None


async def payment_by_provider_ref(
    session: AsyncSession, provider: str, provider_ref: str, *, lock: bool = False
) -> PaymentRow | None:
    sql = (
        f"SELECT {_PAYMENT_COLUMNS} FROM payments.payments"  # noqa: S608
        " WHERE provider = :provider AND provider_ref = :ref"
    )
    row = (
        await session.execute(
            text(sql + (" FOR UPDATE" if lock else "")), {"provider": provider, "ref": provider_ref}
        )
    ).first()
    return _payment(row) if row is not None else None


async def update_payment(session: AsyncSession, payment_id: str, **values: Any) -> None:
    assignments = ", ".join(f"{name} = :{name}" for name in values)
    await session.execute(
        text(
            f"UPDATE payments.payments SET {assignments}, updated_at = now() WHERE id = :id"  # noqa: S608
        ),
        {**values, "id": payment_id},
    )


async def add_ledger_transaction(
    session: AsyncSession, table: str, row_id: str, txn_id: str
) -> None:
    """Append a ledger transaction id to a payment's or payout's list (`table` is ours)."""
    if table not in {"payments", "payouts"}:
        raise ValueError(table)
    await session.execute(
        text(
            f"UPDATE payments.{table} SET ledger_transaction_ids ="  # noqa: S608
            " array_append(ledger_transaction_ids, :txn), updated_at = now() WHERE id = :id"
        ),
        {"txn": txn_id, "id": row_id},
    )


# ---- steps ----------------------------------------------------------------------------


async def add_step(
    session: AsyncSession,
    saga_id: str,
    name: str,
    status: str,
    *,
    attempts: int = 0,
    provider: str | None = None,
    provider_ref: str | None = None,
    provider_key: str | None = None,
    amount_minor: int | None = None,
    subject_id: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> int:
    if name not in STEP_NAMES:
        raise InvariantViolation("saga_step_declared", f"step {name!r} is not in STEP_NAMES")
    finished = status != "started"
    step_id = (
        await session.execute(
            text(
                """
                INSERT INTO payments.steps (saga_id, name, status, attempts, provider,
                    provider_ref, provider_key, amount_minor, subject_id, detail, finished_at)
                VALUES (:saga_id, :name, :status, :attempts, :provider, :provider_ref,
                    :provider_key, :amount_minor, :subject_id, CAST(:detail AS jsonb),
                    CASE WHEN :finished THEN now() END)
                RETURNING id
                """
            ),
            {
                "saga_id": saga_id,
                "name": name,
                "status": status,
                "attempts": attempts,
                "provider": provider,
                "provider_ref": provider_ref,
                "provider_key": provider_key,
                "amount_minor": amount_minor,
                "subject_id": subject_id,
                "detail": json.dumps(dict(detail or {})),
                "finished": finished,
            },
        )
    ).scalar_one()
    return int(step_id)


async def finish_step(
    session: AsyncSession,
    step_id: int,
    status: str,
    *,
    provider_ref: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    await session.execute(
        text(
            """
            UPDATE payments.steps SET status = :status,
                provider_ref = COALESCE(:provider_ref, provider_ref),
                detail = detail || CAST(:detail AS jsonb),
                finished_at = now(), updated_at = now()
            WHERE id = :id
            """
        ),
        {
            "id": step_id,
            "status": status,
            "provider_ref": provider_ref,
            "detail": json.dumps(dict(detail or {})),
        },
    )


async def count_attempt(session: AsyncSession, step_id: int) -> None:
    await session.execute(
        text(
            "UPDATE payments.steps SET attempts = attempts + 1, updated_at = now() WHERE id = :id"
        ),
        {"id": step_id},
    )


async def steps_of(session: AsyncSession, saga_id: str) -> list[StepRow]:
    sql = f"SELECT {_STEP_COLUMNS} FROM payments.steps WHERE saga_id = :id ORDER BY id"  # noqa: S608
    return [_step(row) for row in (await session.execute(text(sql), {"id": saga_id}))]


async def open_step(
    session: AsyncSession, saga_id: str, name: str, subject_id: str | None = None
) -> StepRow | None:
    """The saga's `started` step of that name (and subject), if one is in flight."""
    sql = (
        f"SELECT {_STEP_COLUMNS} FROM payments.steps"  # noqa: S608
        " WHERE saga_id = :id AND name = :name AND status = 'started'"
        " AND (CAST(:subject AS text) IS NULL OR subject_id = :subject)"
        " ORDER BY id DESC LIMIT 1"
    )
    row = (
        await session.execute(text(sql), {"id": saga_id, "name": name, "subject": subject_id})
    ).first()
    return _step(row) if row is not None else None


async def stale_steps(
    session: AsyncSession, names: Sequence[str], older_than_s: float, limit: int
) -> list[StepRow]:
    """Started steps nobody touched for `older_than_s`, locked so one worker takes each."""
    sql = (
        f"SELECT {_STEP_COLUMNS} FROM payments.steps"  # noqa: S608
        " WHERE status = 'started' AND name = ANY(:names)"
        " AND updated_at < now() - make_interval(secs => :age)"
        " ORDER BY updated_at LIMIT :limit FOR UPDATE SKIP LOCKED"
    )
    rows = await session.execute(
        text(sql), {"names": list(names), "age": older_than_s, "limit": limit}
    )
    return [_step(row) for row in rows]


def step_json(step: StepRow) -> dict[str, Any]:
    return {
        "name": step.name,
        "status": step.status,
        "attempts": step.attempts,
        "provider": step.provider,
        "provider_reference": step.provider_ref,
        "amount_minor": step.amount_minor,
        "subject_id": step.subject_id,
        "detail": dict(step.detail),
        "started_at": iso(step.started_at),
        "finished_at": iso(step.finished_at),
    }


# ---- refunds ----------------------------------------------------------------------------


async def refund_amounts_not_failed(session: AsyncSession, payment_id: str) -> list[int]:
    rows = await session.execute(
        text(
            "SELECT amount_minor FROM payments.refunds"
            " WHERE payment_id = :id AND status <> 'failed'"
        ),
        {"id": payment_id},
    )
    return [int(value) for (value,) in rows]


async def get_refund(session: AsyncSession, refund_id: str, *, lock: bool = False) -> Any:
    sql = (
        "SELECT id, payment_id, owner, amount_minor, status, provider_ref, ledger_transaction_id,"
        " created_at FROM payments.refunds WHERE id = :id"
    )
    return (
        await session.execute(text(sql + (" FOR UPDATE" if lock else "")), {"id": refund_id})
    ).first()


# ---- clearing accounts ----------------------------------------------------------------


async def clearing_account(session: AsyncSession, provider: str, currency: str) -> str:
    """The provider's clearing account for `currency`, opened on first use.

    Debit-normal with unlimited overdraft (API.md): it mirrors what the provider owes us.
    An advisory lock per (provider, currency) makes concurrent first uses open one account.
    """
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('payments.clearing:' || :p || ':' || :c))"),
        {"p": provider, "c": currency},
    )
    found = (
        await session.execute(
            text(
                "SELECT account_id FROM payments.clearing_accounts"
                " WHERE provider = :p AND currency = :c"
            ),
            {"p": provider, "c": currency},
        )
    ).scalar_one_or_none()
    if found is not None:
        return str(found)
    account = await ledger_api.create_account(
        session,
        code=f"clearing:{provider}:{currency}",
        currency=currency,
        normal_balance="debit",
        overdraft_limit_minor=None,
        metadata={"purpose": "provider clearing", "provider": provider},
    )
    await session.execute(
        text(
            "INSERT INTO payments.clearing_accounts (provider, currency, account_id)"
            " VALUES (:p, :c, :a)"
        ),
        {"p": provider, "c": currency, "a": account.id},
    )
    return account.id

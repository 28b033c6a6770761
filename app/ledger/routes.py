"""HTTP endpoints of the ledger (API.md "Ledger"), declared for the platform pipeline.

The JSON shapes live in `schemas.py` and the verify handler in `verify_routes.py`; this
module holds the account and transaction handlers and `endpoints()`, which the
composition root mounts."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger import api
from app.ledger.schemas import (
    ACCOUNT_SCHEMA,
    BATCH_BODY_LIMIT_BYTES,
    BATCH_RESULT_SCHEMA,
    BATCH_SCHEMA,
    EMPTY_SCHEMA,
    ENTRIES_SCHEMA,
    NEW_ACCOUNT_SCHEMA,
    NEW_TRANSACTION_SCHEMA,
    POST_SCHEMA,
    TRANSACTION_SCHEMA,
    account_json,
    transaction_json,
)
from app.ledger.verify_routes import VERIFY_QUERY, VERIFY_SCHEMA, verify
from app.platform import audit, jsonbody, web
from app.platform.errors import DomainError, ValidationError
from app.platform.utc import rfc3339_or_none
from app.platform.web import Call, Endpoint, Result

_READ = ("ledger:read",)
_WRITE = ("ledger:write",)


async def create_account(call: Call, session: AsyncSession) -> Result:
    body = call.body
    account = await api.create_account(
        session,
        code=body["code"],
        currency=body["currency"],
        normal_balance=body["normal_balance"],
        overdraft_limit_minor=body.get("overdraft_limit_minor", 0),
        customer_id=body.get("customer_id"),
        metadata=body.get("metadata"),
    )
    return Result(201, account_json(account), resource_id=account.id)


async def read_account(call: Call, session: AsyncSession) -> Result:
    raw = call.query.get("as_of")
    as_of = api.parse_time(raw, "as_of") if raw is not None else None
    account = await api.get_account(session, call.path["id"], as_of=as_of)
    return Result(200, account_json(account), resource_id=account.id)


async def list_entries(call: Call, session: AsyncSession) -> Result:
    limit = web.page_limit(call.query)
    cursor = web.decode_cursor(call.query)
    after_id: int | None = None
    if cursor is not None:
        after = cursor.get("after")
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ValidationError("cursor is not one we issued")
        after_id = after
    page = await api.list_entries(session, call.path["id"], limit=limit, after_id=after_id)
    data = [
        {
            "id": entry.id,
            "transaction_id": entry.transaction_id,
            "direction": entry.direction,
            "amount_minor": entry.amount_minor,
            "currency": entry.currency,
            "effect": entry.effect,
            "created_at": rfc3339_or_none(entry.created_at),
            "balance_after_minor": entry.balance_after_minor,
        }
        for entry in page.entries
    ]
    next_cursor = (
        web.encode_cursor({"after": page.next_after_id}) if page.next_after_id is not None else None
    )
    return Result(200, {"data": data, "next_cursor": next_cursor})


async def create_transaction(call: Call, session: AsyncSession) -> Result:
    body = call.body
    legs = [
        api.Leg(item["account_id"], item["direction"], item["amount_minor"], item["currency"])
        for item in body["postings"]
    ]
    raw_expiry = body.get("expires_at")
    transaction = await api.create_transaction(
        session,
        legs=legs,
        status=body["status"],
        expires_at=api.parse_time(raw_expiry, "expires_at") if raw_expiry is not None else None,
        description=body.get("description"),
        external_ref=body.get("external_ref"),
    )
    return Result(201, transaction_json(transaction), resource_id=transaction.id)


def _new_transaction(item: dict[str, Any]) -> api.NewTransaction:
    raw_expiry = item.get("expires_at")
    return api.NewTransaction(
        legs=tuple(
            api.Leg(leg["account_id"], leg["direction"], leg["amount_minor"], leg["currency"])
            for leg in item["postings"]
        ),
        status=item["status"],
        expires_at=api.parse_time(raw_expiry, "expires_at") if raw_expiry is not None else None,
        description=item.get("description"),
        external_ref=item.get("external_ref"),
    )


async def create_transactions(call: Call, session: AsyncSession) -> Result:
    items: list[api.NewTransaction] = []
    for index, item in enumerate(call.body["transactions"]):
        try:
            jsonbody.validate(item, NEW_TRANSACTION_SCHEMA)
            items.append(_new_transaction(item))
        except DomainError as error:
            error.extra["index"] = index
            raise
    created = await api.create_transactions(session, items)
    # Each item is audited as its own create, in this transaction, besides the request's
    # own record (written by the pipeline).
    await audit.record_many(
        session,
        [
            audit.AuditEvent(
                actor=call.principal.client_id if call.principal else None,
                event_type="ledger.transactions.create",
                outcome="success",
                request_id=call.request_id,
                origin_ip=web.client_ip(call.request),
                resource_type="ledger_transaction",
                resource_id=transaction.id,
                decision_id=call.decision_id,
                details={"batch_index": index},
            )
            for index, transaction in enumerate(created)
        ],
    )
    return Result(201, {"transactions": [transaction_json(t) for t in created]})


async def post_transaction(call: Call, session: AsyncSession) -> Result:
    transaction = await api.post_transaction(
        session, call.path["id"], amount_minor=call.body.get("amount_minor")
    )
    return Result(200, transaction_json(transaction), resource_id=transaction.id)


async def void_transaction(call: Call, session: AsyncSession) -> Result:
    transaction = await api.void_transaction(session, call.path["id"])
    return Result(200, transaction_json(transaction), resource_id=transaction.id)


async def reverse_transaction(call: Call, session: AsyncSession) -> Result:
    transaction = await api.reverse_transaction(session, call.path["id"])
    return Result(201, transaction_json(transaction), resource_id=transaction.id)


async def read_transaction(call: Call, session: AsyncSession) -> Result:
    transaction = await api.get_transaction(session, call.path["id"])
    return Result(200, transaction_json(transaction), resource_id=transaction.id)


_AS_OF = {
    "name": "as_of",
    "in": "query",
    "required": False,
    "description": "RFC 3339 time: balances as they stood then, summed from postings.",
    "schema": {"type": "string", "format": "date-time"},
}
_PAGE = (
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": web.MAX_PAGE_SIZE},
    },
    {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
)


# What a new transaction can be refused for, alone or as one item of a batch.
_TRANSACTION_REFUSALS = (
    api.UnknownCurrencyError,
    api.UnbalancedTransactionError,
    api.UnknownAccountError,
    api.CurrencyMismatchError,
    api.InsufficientFundsError,
)


def endpoints() -> list[Endpoint]:
    """The ledger's `/v1` endpoints, for the composition root."""
    return [
        Endpoint(
            method="POST",
            path="/v1/ledger/accounts",
            handler=create_account,
            action="ledger.accounts.create",
            resource_type="ledger_account",
            summary="Open a ledger account",
            scopes=_WRITE,
            success_status=201,
            request_schema=NEW_ACCOUNT_SCHEMA,
            response_schema=ACCOUNT_SCHEMA,
            idempotent=True,
            errors=(api.UnknownCurrencyError, api.DuplicateAccountCodeError),
            tag="ledger",
        ),
        Endpoint(
            method="GET",
            path="/v1/ledger/accounts/{id}",
            handler=read_account,
            action="ledger.accounts.read",
            resource_type="ledger_account",
            summary="Read an account and its balances, now or as of a past time",
            scopes=_READ,
            response_schema=ACCOUNT_SCHEMA,
            query_parameters=(_AS_OF,),
            errors=(api.AccountNotFoundError,),
            tag="ledger",
        ),
        Endpoint(
            method="GET",
            path="/v1/ledger/accounts/{id}/entries",
            handler=list_entries,
            action="ledger.entries.read",
            resource_type="ledger_account",
            summary="List an account's postings with the running posted balance",
            scopes=_READ,
            response_schema=ENTRIES_SCHEMA,
            query_parameters=_PAGE,
            errors=(api.AccountNotFoundError,),
            tag="ledger",
        ),
        Endpoint(
            method="POST",
            path="/v1/ledger/transactions",
            handler=create_transaction,
            action="ledger.transactions.create",
            resource_type="ledger_transaction",
            summary="Write a balanced transaction, posted or pending",
            scopes=_WRITE,
            success_status=201,
            request_schema=NEW_TRANSACTION_SCHEMA,
            response_schema=TRANSACTION_SCHEMA,
            idempotent=True,
            errors=_TRANSACTION_REFUSALS,
            tag="ledger",
        ),
        Endpoint(
            method="POST",
            path="/v1/ledger/transactions/batch",
            handler=create_transactions,
            action="ledger.transactions.batch",
            resource_type="ledger_transaction",
            summary="Write up to 1,000 balanced transactions, all or nothing",
            scopes=_WRITE,
            success_status=201,
            request_schema=BATCH_SCHEMA,
            response_schema=BATCH_RESULT_SCHEMA,
            idempotent=True,
            errors=_TRANSACTION_REFUSALS,
            tag="ledger",
            body_limit_bytes=BATCH_BODY_LIMIT_BYTES,
        ),
        Endpoint(
            method="POST",
            path="/v1/ledger/transactions/{id}/post",
            handler=post_transaction,
            action="ledger.transactions.post",
            resource_type="ledger_transaction",
            summary="Post a pending transaction, in full or in part",
            scopes=_WRITE,
            request_schema=POST_SCHEMA,
            response_schema=TRANSACTION_SCHEMA,
            idempotent=True,
            errors=(
                api.TransactionNotFoundError,
                api.InvalidStateError,
                api.TransactionExpiredError,
                api.PartialPostUnsupportedError,
            ),
            tag="ledger",
        ),
        Endpoint(
            method="POST",
            path="/v1/ledger/transactions/{id}/void",
            handler=void_transaction,
            action="ledger.transactions.void",
            resource_type="ledger_transaction",
            summary="Void a pending transaction, releasing its hold",
            scopes=_WRITE,
            request_schema=EMPTY_SCHEMA,
            response_schema=TRANSACTION_SCHEMA,
            idempotent=True,
            errors=(
                api.TransactionNotFoundError,
                api.InvalidStateError,
                api.TransactionExpiredError,
            ),
            tag="ledger",
        ),
        Endpoint(
            method="POST",
            path="/v1/ledger/transactions/{id}/reverse",
            handler=reverse_transaction,
            action="ledger.transactions.reverse",
            resource_type="ledger_transaction",
            summary="Reverse a posted transaction with a mirror transaction",
            scopes=_WRITE,
            success_status=201,
            request_schema=EMPTY_SCHEMA,
            response_schema=TRANSACTION_SCHEMA,
            idempotent=True,
            errors=(
                api.TransactionNotFoundError,
                api.InvalidStateError,
                api.InsufficientFundsError,
            ),
            tag="ledger",
        ),
        Endpoint(
            method="GET",
            path="/v1/ledger/transactions/{id}",
            handler=read_transaction,
            action="ledger.transactions.read",
            resource_type="ledger_transaction",
            summary="Read a transaction",
            scopes=_READ,
            response_schema=TRANSACTION_SCHEMA,
            errors=(api.TransactionNotFoundError,),
            tag="ledger",
        ),
        Endpoint(
            method="GET",
            path="/v1/ledger/verify",
            handler=verify,
            action="ledger.verify",
            resource_type="ledger",
            summary="Recompute the hash chain and every balance; name the first bad one",
            scopes=_READ,
            response_schema=VERIFY_SCHEMA,
            query_parameters=VERIFY_QUERY,
            tag="ledger",
        ),
    ]

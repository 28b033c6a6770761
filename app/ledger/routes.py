"""HTTP endpoints of the ledger (API.md "Ledger"), declared for the platform pipeline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger import api
from app.platform import audit, jsonbody, web
from app.platform.errors import DomainError, ValidationError
from app.platform.utc import rfc3339_or_none
from app.platform.web import Call, Endpoint, Result

_READ = ("ledger:read",)
_WRITE = ("ledger:write",)
_ID = {"type": "string", "minLength": 1, "maxLength": 64}
AMOUNT_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": api.MAX_AMOUNT_MINOR}
CURRENCY_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^[A-Z]{3}$"}
DIRECTION_SCHEMA: dict[str, Any] = {"type": "string", "enum": ["debit", "credit"]}

NEW_ACCOUNT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["code", "currency", "normal_balance"],
    "properties": {
        "code": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "pattern": "^[A-Za-z0-9][A-Za-z0-9._:/-]*$",
        },
        "currency": CURRENCY_SCHEMA,
        "normal_balance": DIRECTION_SCHEMA,
        "overdraft_limit_minor": {
            "type": ["integer", "null"],
            "minimum": 0,
            "maximum": api.MAX_AMOUNT_MINOR,
        },
        "customer_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 64},
        "metadata": {
            "type": "object",
            "maxProperties": 50,
            "propertyNames": {"maxLength": 40},
            "additionalProperties": {"type": "string", "maxLength": 500},
        },
    },
}

NEW_TRANSACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["postings", "status"],
    "properties": {
        "postings": {
            "type": "array",
            "minItems": 2,
            "maxItems": api.MAX_POSTINGS,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["account_id", "direction", "amount_minor", "currency"],
                "properties": {
                    "account_id": _ID,
                    "direction": DIRECTION_SCHEMA,
                    "amount_minor": AMOUNT_SCHEMA,
                    "currency": CURRENCY_SCHEMA,
                },
            },
        },
        "status": {"type": "string", "enum": [str(status) for status in api.OPENING_STATUSES]},
        "expires_at": {"type": "string", "format": "date-time", "maxLength": 64},
        "description": {"type": "string", "maxLength": 500},
        "external_ref": {"type": "string", "minLength": 1, "maxLength": 128},
    },
}

# Each item is checked against NEW_TRANSACTION_SCHEMA by the handler, so that a refusal
# can name the item's index.
BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["transactions"],
    "properties": {
        "transactions": {
            "type": "array",
            "minItems": 1,
            "maxItems": api.MAX_BATCH_TRANSACTIONS,
            "items": {"type": "object"},
        }
    },
}
# 1,000 items of up to 100 postings would not fit; 1,000 ordinary ones (a few hundred
# bytes each) do, with room.
BATCH_BODY_LIMIT_BYTES = 2 * 1024 * 1024

POST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"amount_minor": AMOUNT_SCHEMA},
}

EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {}}

_BALANCES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["posted", "pending_debits", "pending_credits", "available"],
    "properties": {
        name: {"type": "integer"}
        for name in ("posted", "pending_debits", "pending_credits", "available")
    },
}
ACCOUNT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "code", "currency", "normal_balance", "balances"],
    "properties": {
        "id": {"type": "string"},
        "code": {"type": "string"},
        "currency": {"type": "string"},
        "currency_exponent": {"type": "integer"},
        "normal_balance": DIRECTION_SCHEMA,
        "overdraft_limit_minor": {"type": ["integer", "null"]},
        "customer_id": {"type": ["string", "null"]},
        "metadata": {"type": "object"},
        "created_at": {"type": "string", "format": "date-time"},
        "as_of": {"type": ["string", "null"], "format": "date-time"},
        "balances": _BALANCES_SCHEMA,
    },
}
TRANSACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "status", "postings"],
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": [str(status) for status in api.TransactionStatus]},
        "postings": NEW_TRANSACTION_SCHEMA["properties"]["postings"],
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "description": {"type": ["string", "null"]},
        "external_ref": {"type": ["string", "null"]},
        "reverses": {"type": ["string", "null"]},
        "reversed_by": {"type": ["string", "null"]},
        "posted_amount_minor": {"type": ["integer", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
        "status_changed_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
BATCH_RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["transactions"],
    "properties": {"transactions": {"type": "array", "items": TRANSACTION_SCHEMA}},
}
ENTRIES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["data", "next_cursor"],
    "properties": {
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "transaction_id": {"type": "string"},
                    "direction": DIRECTION_SCHEMA,
                    "amount_minor": {"type": "integer"},
                    "currency": {"type": "string"},
                    "effect": {"type": "string", "enum": ["posted", "hold", "release"]},
                    "created_at": {"type": "string", "format": "date-time"},
                    "balance_after_minor": {"type": "integer"},
                },
            },
        },
        "next_cursor": {"type": ["string", "null"]},
        "anchor": {
            "type": "object",
            "description": "The live chain against the latest head anchored in the evidence "
            "log: consistent, none (nothing anchored), unavailable, or a contradiction "
            "(hash_mismatch, anchored_entry_missing).",
            "properties": {
                "status": {"type": "string"},
                "record_id": {"type": ["string", "null"]},
                "seq": {"type": ["integer", "null"]},
                "hash": {"type": ["string", "null"]},
                "live_hash": {"type": ["string", "null"]},
            },
        },
    },
}
_VERIFY_BALANCES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "posted": {"type": "integer"},
        "pending_debits": {"type": "integer"},
        "pending_credits": {"type": "integer"},
        "available": {"type": "integer"},
    },
}
VERIFY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["ok", "complete", "entries_checked", "accounts_checked"],
    "properties": {
        "ok": {"type": "boolean"},
        "complete": {"type": "boolean"},
        "entries_checked": {"type": "integer"},
        "accounts_checked": {"type": "integer"},
        "next_from_seq": {"type": ["integer", "null"]},
        "next_cursor": {"type": ["string", "null"]},
        "anchor": {
            "type": "object",
            "description": "The live chain against the latest head anchored in the evidence "
            "log: consistent, none (nothing anchored), unavailable, or a contradiction "
            "(hash_mismatch, anchored_entry_missing).",
            "properties": {
                "status": {"type": "string"},
                "record_id": {"type": ["string", "null"]},
                "seq": {"type": ["integer", "null"]},
                "hash": {"type": ["string", "null"]},
                "live_hash": {"type": ["string", "null"]},
            },
        },
        "first_bad_entry": {
            "type": "object",
            "properties": {
                "seq": {"type": "integer"},
                "id": {"type": ["string", "null"]},
                "transaction_id": {"type": ["string", "null"]},
                "reason": {"type": "string"},
            },
        },
        "first_bad_balance": {
            "type": "object",
            "properties": {
                "account_id": {"type": "string"},
                "stored": _VERIFY_BALANCES_SCHEMA,
                "recomputed": _VERIFY_BALANCES_SCHEMA,
            },
        },
    },
}


def account_json(account: api.Account) -> dict[str, Any]:
    balances = account.balances
    return {
        "id": account.id,
        "code": account.code,
        "currency": account.currency,
        "currency_exponent": api.currency_exponent(account.currency),
        "normal_balance": account.normal_balance,
        "overdraft_limit_minor": account.overdraft_limit_minor,
        "customer_id": account.customer_id,
        "metadata": dict(account.metadata),
        "created_at": rfc3339_or_none(account.created_at),
        "as_of": rfc3339_or_none(account.as_of),
        "balances": {
            "posted": balances.posted_minor,
            "pending_debits": balances.pending_debits_minor,
            "pending_credits": balances.pending_credits_minor,
            "available": balances.available_minor,
        },
    }


def transaction_json(transaction: api.Transaction) -> dict[str, Any]:
    return {
        "id": transaction.id,
        "status": transaction.status,
        "postings": [
            {
                "account_id": leg.account_id,
                "direction": leg.direction,
                "amount_minor": leg.amount_minor,
                "currency": leg.currency,
            }
            for leg in transaction.postings
        ],
        "expires_at": rfc3339_or_none(transaction.expires_at),
        "description": transaction.description,
        "external_ref": transaction.external_ref,
        "reverses": transaction.reverses,
        "reversed_by": transaction.reversed_by,
        "posted_amount_minor": transaction.posted_amount_minor,
        "created_at": rfc3339_or_none(transaction.created_at),
        "status_changed_at": rfc3339_or_none(transaction.status_changed_at),
    }


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


def _balances_json(balances: api.Balances) -> dict[str, int]:
    return {
        "posted": balances.posted_minor,
        "pending_debits": balances.pending_debits_minor,
        "pending_credits": balances.pending_credits_minor,
        "available": balances.available_minor,
    }


def _verify_query(query: Mapping[str, str]) -> tuple[int | None, str | None, int]:
    """Where to start (a cursor we issued, or from_seq) and the limit per call.

    None for a part means it is done: the cursor of a check cut short in one part only
    goes on with that part.
    """
    limit = _positive(query, "limit", api.MAX_VERIFY_ENTRIES)
    cursor = web.decode_cursor(query)
    if cursor is None:
        return _positive(query, "from_seq", 1), "", limit
    seq, after = cursor.get("seq"), cursor.get("after")
    if not (seq is None or (isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1)):
        raise ValidationError("cursor is not one we issued")
    if not (after is None or (isinstance(after, str) and len(after) <= 64)):
        raise ValidationError("cursor is not one we issued")
    return seq, after, limit


def _positive(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 12 or not 1 <= int(raw) <= api.MAX_VERIFY_ENTRIES:
        raise ValidationError(f"{name} must be an integer from 1 to {api.MAX_VERIFY_ENTRIES}")
    return int(raw)


class AnchorSource(Protocol):
    """Where verify finds the latest chain head anchored in the evidence log (the
    composition root's services carry it as a `ledger_anchors` field, or None)."""

    async def latest(self) -> tuple[api.ChainHead, str] | None:
        """The anchored head and its evidence record id. Raises ConnectionError."""


async def verify(call: Call, session: AsyncSession) -> Result:
    from_seq, after_account, limit = _verify_query(call.query)
    anchors: AnchorSource | None = getattr(call.services, "ledger_anchors", None)
    found: tuple[api.ChainHead, str] | None = None
    unavailable = False
    if anchors is not None:
        try:
            found = await anchors.latest()
        except ConnectionError:
            unavailable = True
    report = await api.verify_ledger(
        session,
        from_seq=from_seq,
        after_account=after_account,
        limit=limit,
        anchored=found[0] if found else None,
        anchor_record_id=found[1] if found else None,
    )
    anchor = report.anchor
    anchor_json: dict[str, Any] = {
        "status": "unavailable" if unavailable else anchor.status,
        "record_id": anchor.record_id,
        "seq": anchor.anchored.seq if anchor.anchored else None,
        "hash": anchor.anchored.hash if anchor.anchored else None,
        "live_hash": anchor.live_hash,
    }
    chain, balances = report.chain, report.balances
    body: dict[str, Any] = {
        "ok": report.ok,
        "complete": report.complete,
        "entries_checked": chain.entries_checked,
        "accounts_checked": balances.accounts_checked,
        "next_from_seq": chain.next_from_seq,
        "anchor": anchor_json,
        "next_cursor": None
        if report.complete
        else web.encode_cursor({"seq": chain.next_from_seq, "after": balances.next_after_account}),
    }
    if chain.first_bad_entry is not None:
        bad = chain.first_bad_entry
        body["first_bad_entry"] = {
            "seq": bad.seq,
            "id": bad.entry_id,
            "transaction_id": bad.transaction_id,
            "reason": bad.reason,
        }
    if balances.first_bad_balance is not None:
        mismatch = balances.first_bad_balance
        body["first_bad_balance"] = {
            "account_id": mismatch.account_id,
            "stored": _balances_json(mismatch.stored),
            "recomputed": _balances_json(mismatch.recomputed),
        }
    return Result(200, body)


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
_VERIFY_QUERY = (
    {
        "name": "from_seq",
        "in": "query",
        "required": False,
        "description": "Check the chain from this journal seq on (and every balance).",
        "schema": {"type": "integer", "minimum": 1},
    },
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "Go on where a cut-short check stopped (its next_cursor).",
        "schema": {"type": "string"},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "At most this many entries and this many accounts in one call.",
        "schema": {"type": "integer", "minimum": 1},
    },
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
            errors=(
                api.UnknownCurrencyError,
                api.UnbalancedTransactionError,
                api.UnknownAccountError,
                api.CurrencyMismatchError,
                api.InsufficientFundsError,
            ),
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
            errors=(
                api.UnknownCurrencyError,
                api.UnbalancedTransactionError,
                api.UnknownAccountError,
                api.CurrencyMismatchError,
                api.InsufficientFundsError,
            ),
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
            query_parameters=_VERIFY_QUERY,
            tag="ledger",
        ),
    ]

"""Customers and their KYC status. PII is encrypted by Vault transit before it is stored.

The database holds only `vault:vN:` ciphertexts for name, email and date of birth; the
plaintext exists in memory for the length of one request. Responses that are stored
(idempotent replays) never carry PII; only a `GET` by the owning client decrypts it.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import hvac
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform import audit
from app.platform.errors import ConflictError, NotFoundError
from app.platform.utc import rfc3339
from app.platform.vault import TRANSIT_MOUNT, Vault
from app.platform.web import Call, Endpoint, Result, client_ip

PII_KEY = "moneypath-pii"
PII_COLUMNS = ("name_ciphertext", "email_ciphertext", "date_of_birth_ciphertext")
REWRAP_BATCH = 200
MAX_REWRAP_BATCHES = 10_000  # bounds the rotation loop: 2 million customers


class CustomerNotFoundError(NotFoundError):
    """No customer with this id, or one that belongs to another client."""


class InvalidKycTransitionError(ConflictError):
    code = "invalid_state"
    title = "Invalid KYC transition"


# From each status, the statuses a KYC decision may move a customer to.
KYC_TRANSITIONS = {
    "pending": frozenset({"verified", "rejected"}),
    "verified": frozenset({"rejected"}),
    "rejected": frozenset({"verified"}),
}

CREATE_CUSTOMER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "email", "country"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "email": {
            "type": "string",
            "minLength": 3,
            "maxLength": 254,
            "pattern": "^[^@\\s]+@[^@\\s]+$",
        },
        "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
        "date_of_birth": {
            "type": "string",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        },
    },
}
KYC_DECISION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["status"],
    "properties": {
        "status": {"type": "string", "enum": ["verified", "rejected"]},
        "reason": {"type": "string", "maxLength": 500},
    },
}
CUSTOMER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "country", "kyc_status", "created_at", "updated_at"],
    "properties": {
        "id": {"type": "string"},
        "country": {"type": "string"},
        "kyc_status": {"type": "string", "enum": ["pending", "verified", "rejected"]},
        "kyc_reason": {"type": ["string", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "name": {"type": "string"},
        "email": {"type": "string"},
        "date_of_birth": {"type": ["string", "null"]},
    },
}


@dataclass(frozen=True, slots=True)
class KycState:
    customer_id: str
    owner: str
    kyc_status: str


@dataclass(frozen=True, slots=True)
class RiskProfile:
    """What risk rules may know about a customer: no PII, only facts about the relationship."""

    customer_id: str
    owner: str
    country: str
    kyc_status: str
    has_date_of_birth: bool
    created_at: datetime


def _vault(call: Call) -> Vault:
    return call.services.vault


async def _encrypt(vault: Vault, value: str) -> str:
    return await asyncio.to_thread(vault.encrypt, PII_KEY, value.encode())


async def _decrypt(vault: Vault, ciphertext: str) -> str:
    return (await asyncio.to_thread(vault.decrypt, PII_KEY, ciphertext)).decode()


_SELECT = """
    SELECT id, owner, name_ciphertext, email_ciphertext, date_of_birth_ciphertext, country,
           kyc_status, kyc_reason, created_at, updated_at
    FROM identity.customers WHERE id = :id
"""


def _public_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "country": row.country,
        "kyc_status": row.kyc_status,
        "kyc_reason": row.kyc_reason,
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
    }


async def _row(session: AsyncSession, customer_id: str, *, lock: bool = False) -> Any:
    row = (
        await session.execute(text(_SELECT + (" FOR UPDATE" if lock else "")), {"id": customer_id})
    ).first()
    if row is None:
        raise CustomerNotFoundError(f"no customer {customer_id}")
    return row


async def owner_of(session: AsyncSession, customer_id: str) -> str | None:
    return (
        await session.execute(
            text("SELECT owner FROM identity.customers WHERE id = :id"), {"id": customer_id}
        )
    ).scalar_one_or_none()


async def kyc_state(session: AsyncSession, customer_id: str) -> KycState:
    row = await _row(session, customer_id)
    return KycState(customer_id=row.id, owner=row.owner, kyc_status=row.kyc_status)


async def risk_profile(session: AsyncSession, customer_id: str) -> RiskProfile:
    row = (
        await session.execute(
            text(
                """
                SELECT id, owner, country, kyc_status, created_at,
                       date_of_birth_ciphertext IS NOT NULL AS has_date_of_birth
                FROM identity.customers WHERE id = :id
                """
            ),
            {"id": customer_id},
        )
    ).first()
    if row is None:
        raise CustomerNotFoundError(f"no customer {customer_id}")
    return RiskProfile(
        customer_id=row.id,
        owner=row.owner,
        country=row.country,
        kyc_status=row.kyc_status,
        has_date_of_birth=row.has_date_of_birth,
        created_at=row.created_at,
    )


async def create_customer_handler(call: Call, session: AsyncSession) -> Result:
    vault = _vault(call)
    body = call.body
    dob = body.get("date_of_birth")
    customer_id = "cus_" + secrets.token_hex(12)
    await session.execute(
        text(
            """
            INSERT INTO identity.customers
                (id, owner, name_ciphertext, email_ciphertext, date_of_birth_ciphertext, country)
            VALUES (:id, :owner, :name, :email, :dob, :country)
            """
        ),
        {
            "id": customer_id,
            "owner": call.caller.client_id,
            "name": await _encrypt(vault, body["name"]),
            "email": await _encrypt(vault, body["email"]),
            "dob": await _encrypt(vault, dob) if dob is not None else None,
            "country": body["country"],
        },
    )
    view = _public_view(await _row(session, customer_id))
    return Result(status=201, body=view, resource_id=customer_id)


async def get_customer_handler(call: Call, session: AsyncSession) -> Result:
    row = await _row(session, call.path["id"])
    vault = _vault(call)
    view = _public_view(row)
    view["name"] = await _decrypt(vault, row.name_ciphertext)
    view["email"] = await _decrypt(vault, row.email_ciphertext)
    view["date_of_birth"] = (
        await _decrypt(vault, row.date_of_birth_ciphertext)
        if row.date_of_birth_ciphertext is not None
        else None
    )
    return Result(status=200, body=view, resource_id=row.id)


async def kyc_decision_handler(call: Call, session: AsyncSession) -> Result:
    row = await _row(session, call.path["id"], lock=True)
    target = call.body["status"]
    if target not in KYC_TRANSITIONS[row.kyc_status]:
        raise InvalidKycTransitionError(f"KYC status {row.kyc_status} cannot become {target}")
    await session.execute(
        text(
            """
            UPDATE identity.customers
            SET kyc_status = :status, kyc_reason = :reason, updated_at = now()
            WHERE id = :id
            """
        ),
        {"id": row.id, "status": target, "reason": call.body.get("reason")},
    )
    # The transition itself, with both states, in the same transaction as the change.
    await audit.record(
        session,
        audit.AuditEvent(
            actor=call.principal.client_id if call.principal else None,
            event_type="customers.kyc_status_changed",
            outcome="success",
            request_id=call.request_id,
            origin_ip=client_ip(call.request),
            resource_type="customer",
            resource_id=row.id,
            decision_id=call.decision_id,
            details={"from": row.kyc_status, "to": target},
        ),
    )
    return Result(status=200, body=_public_view(await _row(session, row.id)), resource_id=row.id)


def endpoints() -> list[Endpoint]:
    return [
        Endpoint(
            method="POST",
            path="/v1/customers",
            handler=create_customer_handler,
            action="customers.create",
            resource_type="customer",
            summary="Create a customer (PII is stored encrypted by Vault transit)",
            scopes=("kyc:write",),
            success_status=201,
            request_schema=CREATE_CUSTOMER_SCHEMA,
            response_schema=CUSTOMER_SCHEMA,
            idempotent=True,
            tag="identity",
        ),
        Endpoint(
            method="GET",
            path="/v1/customers/{id}",
            handler=get_customer_handler,
            action="customers.read",
            resource_type="customer",
            summary="Read a customer, PII decrypted (owner only)",
            scopes=("kyc:write",),
            response_schema=CUSTOMER_SCHEMA,
            errors=(CustomerNotFoundError,),
            owner_of=owner_of,
            tag="identity",
            audit_reads=True,  # reading PII is itself an event PCI DSS 10.2.1.1 wants logged
        ),
        Endpoint(
            method="POST",
            path="/v1/customers/{id}/kyc",
            handler=kyc_decision_handler,
            action="customers.kyc",
            resource_type="customer",
            summary="Record a KYC decision (audited transition)",
            scopes=("kyc:write",),
            request_schema=KYC_DECISION_SCHEMA,
            response_schema=CUSTOMER_SCHEMA,
            idempotent=True,
            errors=(CustomerNotFoundError, InvalidKycTransitionError),
            owner_of=owner_of,
            tag="identity",
        ),
    ]


# ---- PII key rotation -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RotationReport:
    key_version: int
    rewrapped: int
    min_decryption_version: int


def _rewrap(vault: Vault, ciphertext: str) -> str:
    response = vault.raw.secrets.transit.rewrap_data(
        name=PII_KEY, ciphertext=ciphertext, mount_point=TRANSIT_MOUNT
    )
    rewrapped: str = response["data"]["ciphertext"]
    return rewrapped


async def rotate_pii_key(
    vault: Vault, sessions: async_sessionmaker[AsyncSession]
) -> RotationReport:
    """Rotate the transit key, rewrap every stored ciphertext to the new version, then
    refuse older versions (`min_decryption_version`). Safe to re-run after a failure: a
    ciphertext already on the latest version is rewrapped to itself."""
    transit = vault.raw.secrets.transit
    await asyncio.to_thread(transit.rotate_key, name=PII_KEY, mount_point=TRANSIT_MOUNT)
    key = await asyncio.to_thread(transit.read_key, name=PII_KEY, mount_point=TRANSIT_MOUNT)
    latest = int(key["data"]["latest_version"])
    prefix = f"vault:v{latest}:"
    rewrapped = 0
    after = ""
    for _ in range(MAX_REWRAP_BATCHES):
        async with sessions() as session, session.begin():
            rows = (
                await session.execute(
                    text(
                        """
                        SELECT id, name_ciphertext, email_ciphertext, date_of_birth_ciphertext
                        FROM identity.customers WHERE id > :after ORDER BY id LIMIT :limit
                        FOR UPDATE
                        """
                    ),
                    {"after": after, "limit": REWRAP_BATCH},
                )
            ).all()
            if not rows:
                break
            for row in rows:
                values: dict[str, str | None] = {}
                for column in PII_COLUMNS:
                    old = getattr(row, column)
                    if old is None or old.startswith(prefix):
                        values[column] = old
                        continue
                    values[column] = await asyncio.to_thread(_rewrap, vault, old)
                    rewrapped += 1
                await session.execute(
                    text(
                        """
                        UPDATE identity.customers
                        SET name_ciphertext = :name_ciphertext,
                            email_ciphertext = :email_ciphertext,
                            date_of_birth_ciphertext = :date_of_birth_ciphertext
                        WHERE id = :id
                        """
                    ),
                    {"id": row.id, **values},
                )
            after = rows[-1].id
    else:
        raise RuntimeError("PII rewrap did not finish within its batch bound; re-run it")
    # Only now, with nothing left on an old version, may old versions stop decrypting.
    await asyncio.to_thread(
        transit.update_key_configuration,
        name=PII_KEY,
        min_decryption_version=latest,
        mount_point=TRANSIT_MOUNT,
    )
    return RotationReport(key_version=latest, rewrapped=rewrapped, min_decryption_version=latest)


def is_refused(vault: Vault, ciphertext: str) -> bool:
    """True when Vault refuses to decrypt `ciphertext` (for checks after a rotation)."""
    try:
        vault.decrypt(PII_KEY, ciphertext)
    except hvac.exceptions.InvalidRequest:
        return True
    return False

"""Identity use cases over the `identity` schema. Callers own the transaction."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.identity import domain
from app.identity.domain import Client, ClientKey, CreatedClient
from app.platform.errors import NotFoundError

MAX_KEYS_PER_CLIENT = 20


class ClientNotFoundError(NotFoundError):
    """No API client with this id."""


async def create_client(
    session: AsyncSession,
    *,
    name: str,
    scopes: Sequence[str],
    public_jwk: Mapping[str, Any],
    owner: str | None,
) -> CreatedClient:
    checked_name = domain.check_name(name)
    checked_scopes = domain.check_scopes(scopes)
    jwk = domain.check_public_jwk(public_jwk)
    client_id = domain.new_client_id()
    secret = domain.new_client_secret()
    await session.execute(
        text(
            """
            INSERT INTO identity.clients (id, name, secret_hash, scopes, owner)
            VALUES (:id, :name, :secret_hash, :scopes, :owner)
            """
        ),
        {
            "id": client_id,
            "name": checked_name,
            "secret_hash": await asyncio.to_thread(domain.hash_secret, secret),
            "scopes": list(checked_scopes),
            "owner": owner,
        },
    )
    key_id = await add_key(session, client_id=client_id, public_jwk=jwk)
    client = await get_client(session, client_id)
    return CreatedClient(client=client, client_secret=secret, key_id=key_id)


async def add_key(
    session: AsyncSession,
    *,
    client_id: str,
    public_jwk: Mapping[str, Any],
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> str:
    jwk = domain.check_public_jwk(public_jwk)
    count = (
        await session.execute(
            text("SELECT count(*) FROM identity.client_keys WHERE client_id = :id"),
            {"id": client_id},
        )
    ).scalar_one()
    if count >= MAX_KEYS_PER_CLIENT:
        raise domain.InvalidPublicKeyError(f"a client may hold at most {MAX_KEYS_PER_CLIENT} keys")
    key_id = domain.new_key_id()
    await session.execute(
        text(
            """
            INSERT INTO identity.client_keys (key_id, client_id, public_jwk, not_before, not_after)
            VALUES (:key_id, :client_id, CAST(:jwk AS jsonb), coalesce(:not_before, now()),
                    :not_after)
            """
        ),
        {
            "key_id": key_id,
            "client_id": client_id,
            "jwk": json.dumps(jwk),
            "not_before": not_before,
            "not_after": not_after,
        },
    )
    return key_id


async def get_client(session: AsyncSession, client_id: str) -> Client:
    row = (
        await session.execute(
            text(
                """
                SELECT id, name, scopes, disabled, owner, created_at
                FROM identity.clients WHERE id = :id
                """
            ),
            {"id": client_id},
        )
    ).first()
    if row is None:
        raise ClientNotFoundError(f"no client {client_id}")
    keys = (
        await session.execute(
            text(
                """
                SELECT key_id, public_jwk, created_at, not_before, not_after
                FROM identity.client_keys WHERE client_id = :id
                ORDER BY created_at DESC, key_id DESC
                LIMIT :limit
                """
            ),
            {"id": client_id, "limit": MAX_KEYS_PER_CLIENT},
        )
    ).all()
    return Client(
        id=row.id,
        name=row.name,
        scopes=tuple(row.scopes),
        disabled=row.disabled,
        owner=row.owner,
        created_at=row.created_at,
        keys=tuple(
            ClientKey(
                key_id=key.key_id,
                public_jwk=dict(key.public_jwk),
                created_at=key.created_at,
                not_before=key.not_before,
                not_after=key.not_after,
            )
            for key in keys
        ),
    )


async def authenticate_client(
    session: AsyncSession, client_id: str, client_secret: str
) -> Client | None:
    """The client when `client_secret` is right and the client is enabled, else None."""
    row = (
        await session.execute(
            text("SELECT secret_hash, disabled FROM identity.clients WHERE id = :id"),
            {"id": client_id},
        )
    ).first()
    stored = row.secret_hash if row is not None else domain.DUMMY_SECRET_HASH
    # scrypt takes tens of milliseconds of CPU: keep it off the event loop.
    matches = await asyncio.to_thread(domain.secret_matches, client_secret, stored)
    if row is None or not matches or row.disabled:
        return None
    return await get_client(session, client_id)


def pick_key(client: Client, key_id: str | None, now: datetime) -> ClientKey | None:
    """The key a token binds: `key_id` if active, else the most recently registered active one."""
    active = [
        key for key in client.keys if domain.key_is_active(key.not_before, key.not_after, now)
    ]
    if key_id is not None:
        return next((key for key in active if key.key_id == key_id), None)
    return active[0] if active else None


# One definition of "usable", shared with the evidence service (identity migration 0002).
_IS_ACTIVE = text(
    "SELECT identity.key_is_active(CAST(:client_id AS text), CAST(:key_id AS text)) AS active"
)


async def is_active(session: AsyncSession, client_id: str, key_id: str | None) -> bool:
    """True while the client is enabled and (if given) its key is within its validity."""
    row = (await session.execute(_IS_ACTIVE, {"client_id": client_id, "key_id": key_id})).first()
    return bool(row is not None and row.active)


async def set_disabled(session: AsyncSession, client_id: str, disabled: bool) -> Client:
    result = await session.execute(
        text(
            """
            UPDATE identity.clients
            SET disabled = :disabled,
                disabled_at = CASE WHEN :disabled THEN now() ELSE NULL END
            WHERE id = :id
            """
        ),
        {"id": client_id, "disabled": disabled},
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ClientNotFoundError(f"no client {client_id}")
    return await get_client(session, client_id)


async def set_key_validity(
    session: AsyncSession, client_id: str, key_id: str, not_after: datetime
) -> None:
    result = await session.execute(
        text(
            """
            UPDATE identity.client_keys
            SET not_after = GREATEST(:not_after, not_before + interval '1 microsecond')
            WHERE key_id = :key_id AND client_id = :client_id
            """
        ),
        {"client_id": client_id, "key_id": key_id, "not_after": not_after},
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ClientNotFoundError(f"no key {key_id} for client {client_id}")

"""Registering an API client straight in the database, as the operator's `moneypath clients
create` and the dev stack's own service clients (the ledger anchor, the recon evidence
writer) do: they run where the API may not be up yet, so they do not call it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from app.identity import api as identity_api
from app.platform.db import create_engine, session_factory


def create_client(
    database_url: str, *, name: str, scopes: Iterable[str], public_pem: str
) -> identity_api.CreatedClient:
    """One client with one Ed25519 signing key; raises the identity domain's errors."""

    async def create() -> identity_api.CreatedClient:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with session_factory(engine)() as session, session.begin():
                return await identity_api.create_client(
                    session, name=name, scopes=list(scopes), public_key_pem=public_pem
                )
        finally:
            await engine.dispose()

    return asyncio.run(create())

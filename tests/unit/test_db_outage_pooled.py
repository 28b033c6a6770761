"""The hot path's statements outside a Session (db_pipeline) report an unreachable
database as SQLAlchemy's wrapped error, which the ASGI apps answer with 503
`service_unavailable`; a raw driver error would have been a 500 (the db-restart drill)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from sqlalchemy.exc import DBAPIError

from app.platform import db
from app.platform.db_outage import is_database_unavailable


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _select_one(url: str) -> None:
    engine = db.create_autocommit_engine(url, pool_size=1)
    try:
        await db.fetch_rows_pooled(engine, "SELECT 1", {})
    finally:
        await engine.dispose()


def test_pooled_statement_raises_an_outage_when_the_database_refuses_connections() -> None:
    url = f"postgresql://nobody@127.0.0.1:{_closed_port()}/moneypath"
    with pytest.raises(DBAPIError) as raised:
        asyncio.run(_select_one(url))
    assert is_database_unavailable(raised.value)

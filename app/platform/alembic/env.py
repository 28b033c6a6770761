"""Alembic environment shared by the API and the evidence service."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

from app.platform.db import async_url

# An arbitrary constant: every process that migrates takes this advisory lock first, so
# two workers starting together cannot both run the same migration.
MIGRATION_LOCK_ID = 7_205_114_403

url = context.config.attributes["database_url"]
engine = create_engine(async_url(url))

with engine.connect() as connection:
    connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    connection.commit()
    try:
        context.configure(
            connection=connection,
            version_table="alembic_version",
            version_table_schema="public",
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
        connection.commit()
engine.dispose()

"""platform: an Idempotency-Key belongs to one client and one request target

The key was unique per (client, method, route template, key), so the same key on another
resource of the same route claimed a fresh row and the fingerprint (the body) matched: it
replayed the first resource's answer. The key is now unique per (client, key), and the
row remembers the method and concrete path it was first sent to.

Rows written before this migration hold a route template in `path`. A retry of such a
request no longer matches it and gets 422 `idempotency_key_reused`: it fails safe (nothing
executes twice) for the at most one TTL until those rows expire.

Revision ID: platform_0002_idem_target
Revises: platform_0001
"""

from alembic import op

revision = "platform_0002_idem_target"
down_revision = "platform_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Keep the newest row of each (client, key) that was used on several targets.
    op.execute(
        """
        DELETE FROM platform.idempotency_keys AS older
        USING platform.idempotency_keys AS newer
        WHERE older.client_id = newer.client_id AND older.key = newer.key
          AND (older.created_at, older.method, older.route)
              < (newer.created_at, newer.method, newer.route)
        """
    )
    op.execute("ALTER TABLE platform.idempotency_keys RENAME COLUMN route TO path")
    op.execute("ALTER TABLE platform.idempotency_keys DROP CONSTRAINT idempotency_keys_pkey")
    op.execute("ALTER TABLE platform.idempotency_keys ADD PRIMARY KEY (client_id, key)")


def downgrade() -> None:
    op.execute("ALTER TABLE platform.idempotency_keys DROP CONSTRAINT idempotency_keys_pkey")
    op.execute("ALTER TABLE platform.idempotency_keys RENAME COLUMN path TO route")
    op.execute(
        "ALTER TABLE platform.idempotency_keys ADD PRIMARY KEY (client_id, method, route, key)"
    )

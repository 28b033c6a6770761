"""ledger schema: accounts, balances, append-only transactions, partitioned postings, journal

Revision ID: ledger_0001
Revises:
"""

from collections.abc import Iterable

from alembic import op

from app.ledger.domain import CLOSING_STATUSES, OPENING_STATUSES, JournalKind, TransactionStatus

revision = "ledger_0001"
down_revision = None
branch_labels = ("ledger",)
depends_on = "platform_0001"

# Tables whose rows are facts: a change is a new row, never an edit.
_APPEND_ONLY = (
    "accounts",
    "transactions",
    "transaction_status_changes",
    "postings",
    "journal_entries",
)


def _sql_list(values: Iterable[str]) -> str:
    """The enum's values as an SQL list, so the CHECKs below cannot drift from domain.py."""
    return ", ".join(f"'{value}'" for value in values)


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS ledger")
    op.execute(
        """
        CREATE TABLE ledger.accounts (
            id text PRIMARY KEY,
            code text NOT NULL UNIQUE CHECK (length(code) BETWEEN 1 AND 64),
            currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
            normal_balance text NOT NULL CHECK (normal_balance IN ('debit', 'credit')),
            overdraft_limit_minor bigint
                CHECK (overdraft_limit_minor IS NULL OR overdraft_limit_minor >= 0),
            customer_id text,
            metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at timestamptz NOT NULL
        )
        """
    )
    # The one mutable row per account: current balances, and the row every writer locks.
    op.execute(
        """
        CREATE TABLE ledger.balances (
            account_id text PRIMARY KEY REFERENCES ledger.accounts (id),
            posted_minor numeric(40, 0) NOT NULL DEFAULT 0,
            pending_debits_minor numeric(40, 0) NOT NULL DEFAULT 0
                CHECK (pending_debits_minor >= 0),
            pending_credits_minor numeric(40, 0) NOT NULL DEFAULT 0
                CHECK (pending_credits_minor >= 0),
            updated_at timestamptz NOT NULL
        )
        """
    )
    op.execute(
        f"""
        CREATE TABLE ledger.transactions (
            id text PRIMARY KEY,
            entry_id text NOT NULL UNIQUE,
            status text NOT NULL CHECK (status IN ({_sql_list(OPENING_STATUSES)})),
            expires_at timestamptz,
            description text,
            external_ref text,
            reverses text UNIQUE REFERENCES ledger.transactions (id),
            posting_count smallint NOT NULL CHECK (posting_count BETWEEN 2 AND 100),
            created_at timestamptz NOT NULL,
            CHECK ((status = '{TransactionStatus.PENDING}') = (expires_at IS NOT NULL))
        )
        """
    )
    # At most one status change per pending transaction: the primary key makes "post at
    # most once, void at most once" a database fact, not only an application check.
    op.execute(
        f"""
        CREATE TABLE ledger.transaction_status_changes (
            transaction_id text PRIMARY KEY REFERENCES ledger.transactions (id),
            status text NOT NULL CHECK (status IN ({_sql_list(CLOSING_STATUSES)})),
            posted_amount_minor bigint CHECK (posted_amount_minor > 0),
            entry_id text NOT NULL UNIQUE,
            occurred_at timestamptz NOT NULL
        )
        """
    )
    # Work queue of unresolved holds; a row is deleted when its transaction is posted,
    # voided or expired, and that delete is the lock that serializes those three.
    op.execute(
        """
        CREATE TABLE ledger.open_holds (
            transaction_id text PRIMARY KEY REFERENCES ledger.transactions (id),
            expires_at timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX ix_open_holds_expires_at ON ledger.open_holds (expires_at)")
    op.execute(
        """
        CREATE TABLE ledger.postings (
            id bigint GENERATED ALWAYS AS IDENTITY,
            created_at timestamptz NOT NULL,
            entry_id text NOT NULL,
            transaction_id text NOT NULL,
            leg smallint NOT NULL,
            account_id text NOT NULL REFERENCES ledger.accounts (id),
            direction text NOT NULL CHECK (direction IN ('debit', 'credit')),
            amount_minor bigint NOT NULL CHECK (amount_minor > 0),
            currency text NOT NULL,
            effect text NOT NULL CHECK (effect IN ('posted', 'hold', 'release')),
            balance_after_minor numeric(40, 0) NOT NULL,
            PRIMARY KEY (id, created_at)
        ) PARTITION BY RANGE (created_at)
        """
    )
    op.execute("CREATE TABLE ledger.postings_default PARTITION OF ledger.postings DEFAULT")
    op.execute("SELECT platform.ensure_month_partitions('ledger.postings', 3)")
    op.execute("CREATE INDEX ix_postings_account_id ON ledger.postings (account_id, id)")
    # Covering index: an as_of balance is an index-only range scan per account.
    op.execute(
        """
        CREATE INDEX ix_postings_account_time ON ledger.postings (account_id, created_at)
        INCLUDE (direction, amount_minor, effect)
        """
    )
    op.execute("CREATE INDEX ix_postings_entry ON ledger.postings (entry_id)")
    op.execute("CREATE INDEX ix_postings_transaction ON ledger.postings (transaction_id)")
    op.execute(
        f"""
        CREATE TABLE ledger.journal_entries (
            seq bigint PRIMARY KEY CHECK (seq >= 1),
            id text NOT NULL UNIQUE,
            transaction_id text NOT NULL,
            kind text NOT NULL CHECK (kind IN ({_sql_list(JournalKind)})),
            occurred_at timestamptz NOT NULL,
            prev_hash text NOT NULL,
            hash text NOT NULL
        )
        """
    )
    # The chain head: one row, locked last by every journal write so the chain is linear.
    op.execute(
        """
        CREATE TABLE ledger.chain_head (
            id smallint PRIMARY KEY CHECK (id = 1),
            last_seq bigint NOT NULL,
            last_hash text NOT NULL
        )
        """
    )
    op.execute("INSERT INTO ledger.chain_head VALUES (1, 0, repeat('0', 64))")
    for table in _APPEND_ONLY:
        op.execute(
            f"""
            CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON ledger.{table}
            FOR EACH ROW EXECUTE FUNCTION platform.refuse_change()
            """
        )
        op.execute(
            f"""
            CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON ledger.{table}
            FOR EACH STATEMENT EXECUTE FUNCTION platform.refuse_change()
            """
        )


def downgrade() -> None:
    op.execute("DROP SCHEMA ledger CASCADE")

"""identity schema: API clients, their public keys, customers with encrypted PII

Revision ID: identity_0001
Revises:
"""

from alembic import op

revision = "identity_0001"
down_revision = None
branch_labels = ("identity",)
depends_on = "platform_0001"


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS identity")
    op.execute(
        """
        CREATE TABLE identity.clients (
            id text PRIMARY KEY,
            name text NOT NULL,
            secret_hash text NOT NULL,
            scopes text[] NOT NULL,
            disabled boolean NOT NULL DEFAULT false,
            owner text,
            created_at timestamptz NOT NULL DEFAULT now(),
            disabled_at timestamptz
        )
        """
    )
    op.execute(
        """
        CREATE TABLE identity.client_keys (
            key_id text PRIMARY KEY,
            client_id text NOT NULL REFERENCES identity.clients (id),
            public_jwk jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            not_before timestamptz NOT NULL DEFAULT now(),
            not_after timestamptz,
            CHECK (not_after IS NULL OR not_after > not_before)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_client_keys_client ON identity.client_keys (client_id, created_at DESC)"
    )
    # PII columns hold only Vault transit ciphertexts (`vault:vN:...`), never plaintext.
    op.execute(
        """
        CREATE TABLE identity.customers (
            id text PRIMARY KEY,
            owner text NOT NULL,
            name_ciphertext text NOT NULL CHECK (name_ciphertext LIKE 'vault:v%'),
            email_ciphertext text NOT NULL CHECK (email_ciphertext LIKE 'vault:v%'),
            date_of_birth_ciphertext text CHECK (date_of_birth_ciphertext LIKE 'vault:v%'),
            country text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
            kyc_status text NOT NULL DEFAULT 'pending'
                CHECK (kyc_status IN ('pending', 'verified', 'rejected')),
            kyc_reason text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX ix_customers_owner ON identity.customers (owner, created_at)")


def downgrade() -> None:
    op.execute("DROP SCHEMA identity CASCADE")

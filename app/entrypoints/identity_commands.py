"""`moneypath clients` and `moneypath keys`: administer API clients and rotate identity keys.

They act on the database and Vault directly (the first admin client cannot be made
through the API it would need to call). Heavy imports stay inside the commands so that
`moneypath --help` starts fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.platform.vault import Vault


def _scopes(values: list[str]) -> list[str]:
    # Accept `--scopes a b`, `--scopes a,b` and `--scopes "a b"` alike.
    return [scope for value in values for scope in value.replace(",", " ").split() if scope]


def _database_url(vault: Vault, command: str) -> str | None:
    """The API database's URL as `bootstrap` stored it in Vault; None (said why) if absent."""
    from app.entrypoints.bootstrap import DATABASE_SECRET
    from app.platform.vault import DatabaseNotConfiguredError

    try:
        return vault.database_url(DATABASE_SECRET)
    except DatabaseNotConfiguredError as error:
        print(f"moneypath {command}: {error}", file=sys.stderr)
        return None


def clients_create(args: argparse.Namespace) -> int:
    """Create an API client (the first admin, typically) straight in the database.

    Prints the client id, the secret (shown this once) and the key id as JSON. Without
    --public-key, a new Ed25519 key pair is made and its private key written to
    --private-key-out (mode 0600); the private key is never printed. With --out, the id,
    secret, key id and key path go to that credentials file (mode 0600, for `moneypath
    call`) instead of the screen; the key goes next to it unless --private-key-out says.
    """
    import json

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from app.entrypoints.client_registry import create_client
    from app.entrypoints.operator_call import write_credentials
    from app.platform.client_credentials import private_pem, public_pem
    from app.platform.errors import DomainError
    from app.platform.settings import Settings, SettingsError
    from app.platform.vault import Vault

    if args.out is not None:
        if args.public_key is not None:
            print(
                "moneypath clients create: --out needs a generated key, not --public-key",
                file=sys.stderr,
            )
            return 2
        if Path(args.out).exists():
            print(f"moneypath clients create: {args.out} exists", file=sys.stderr)
            return 2
        args.private_key_out = args.private_key_out or str(Path(args.out).with_suffix(".pem"))
    if args.public_key is None and args.private_key_out is None:
        print(
            "moneypath clients create: give --out, --public-key or --private-key-out",
            file=sys.stderr,
        )
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"moneypath clients create: {error}", file=sys.stderr)
        return 2
    vault = Vault.login(settings.vault_addr, settings.vault_login)
    database_url = _database_url(vault, "clients create")
    if database_url is None:
        return 1
    if args.public_key is not None:
        client_public_pem = Path(args.public_key).read_text()
    else:
        private_key = Ed25519PrivateKey.generate()
        out = Path(args.private_key_out)
        out.touch(mode=0o600, exist_ok=False)
        out.write_bytes(private_pem(private_key))
        client_public_pem = public_pem(private_key)
    try:
        created = create_client(
            database_url,
            name=args.name,
            scopes=_scopes(args.scopes),
            public_pem=client_public_pem,
        )
    except DomainError as error:
        print(f"moneypath clients create: {error.detail}", file=sys.stderr)
        return 1
    if args.out is not None:
        write_credentials(
            Path(args.out),
            api_url=settings.public_base_url,
            client_id=created.client.id,
            client_secret=created.client_secret,
            key_id=created.key_id,
            key_path=Path(args.private_key_out),
        )
        summary = {"client_id": created.client.id, "key_id": created.key_id}
        print(json.dumps({**summary, "credentials_file": args.out}))
        return 0
    print(
        json.dumps(
            {
                "client_id": created.client.id,
                "client_secret": created.client_secret,
                "key_id": created.key_id,
                "scopes": list(created.client.scopes),
                "private_key_file": args.private_key_out,
            }
        )
    )
    return 0


def keys_rotate_jwt(_: argparse.Namespace) -> int:
    """Rotate the token signing key in Vault (previous key stays published)."""
    from app.identity import api as identity_api
    from app.platform.settings import Settings
    from app.platform.vault import Vault

    settings = Settings.from_env()
    vault = Vault.login(settings.vault_addr, settings.vault_login)
    print(identity_api.rotate_signing_key(vault))
    return 0


def keys_rotate_pii(_: argparse.Namespace) -> int:
    """Rotate the PII transit key, rewrap every ciphertext, refuse the old versions."""
    import asyncio

    from app.identity import api as identity_api
    from app.platform.db import create_engine, session_factory
    from app.platform.settings import Settings
    from app.platform.vault import Vault

    settings = Settings.from_env()
    vault = Vault.login(settings.vault_addr, settings.vault_login)
    database_url = _database_url(vault, "keys rotate-pii")
    if database_url is None:
        return 1

    async def rotate() -> identity_api.RotationReport:
        engine = create_engine(database_url, pool_size=2)
        try:
            return await identity_api.rotate_pii_key(vault, session_factory(engine))
        finally:
            await engine.dispose()

    report = asyncio.run(rotate())
    print(
        f"transit key version {report.key_version}; rewrapped {report.rewrapped} ciphertexts; "
        f"min_decryption_version {report.min_decryption_version}"
    )
    return 0


def add_clients_parser(commands: Any) -> None:
    clients = commands.add_parser("clients", help="administer API clients")
    clients_commands = clients.add_subparsers(dest="clients_command", required=True)
    create = clients_commands.add_parser("create", help="create an API client")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", nargs="+", required=True)
    create.add_argument("--public-key", help="Ed25519 public key PEM file")
    create.add_argument("--private-key-out", help="where to write a generated private key")
    create.add_argument(
        "--out", help="write a credentials file for `moneypath call` (mode 0600) instead"
    )
    create.set_defaults(run=clients_create)


def add_keys_parser(commands: Any) -> None:
    keys = commands.add_parser("keys", help="rotate keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    rotate_jwt = keys_commands.add_parser("rotate-jwt", help="rotate the token signing key")
    rotate_jwt.set_defaults(run=keys_rotate_jwt)
    rotate_pii = keys_commands.add_parser("rotate-pii", help="rotate the PII transit key")
    rotate_pii.set_defaults(run=keys_rotate_pii)

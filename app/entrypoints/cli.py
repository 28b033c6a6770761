"""The `moneypath` command: run the dev stack, migrate, and administer the platform."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from app.entrypoints.devstack import Ports, Stack
from app.entrypoints.drills.catalog import add_drill_parser
from app.entrypoints.launchers.processes import REPO_ROOT, StackError
from app.entrypoints.operator_call import add_call_parser


def _ports_from_env() -> Ports:
    defaults = Ports()
    return Ports(
        postgres=int(os.environ.get("PG_PORT", defaults.postgres)),
        vault=int(os.environ.get("VAULT_PORT", defaults.vault)),
        opa=int(os.environ.get("OPA_PORT", defaults.opa)),
        api=int(os.environ.get("API_PORT", defaults.api)),
        evidence=int(os.environ.get("EVIDENCE_PORT", defaults.evidence)),
        sim=int(os.environ.get("SIM_PORT", defaults.sim)),
        worker_metrics=int(os.environ.get("WORKER_METRICS_PORT", defaults.worker_metrics)),
    )


def up(args: argparse.Namespace) -> int:
    """Start everything in the foreground; Ctrl-C (or SIGTERM) stops every child."""
    stack = Stack(
        root=Path(args.data_dir),
        ports=_ports_from_env(),
        database_url=os.environ.get("DATABASE_URL") or None,
        policies_dir=Path(args.policies).resolve(),
        api_workers=args.workers,
    )
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start_all()
        print(
            f"moneypath is up: api {stack.api_url}  evidence {stack.evidence_url}  "
            f"opa {stack.opa_url}  vault {stack.vault_addr}  provider-sim {stack.sim_url}  "
            f"worker-metrics {stack.worker_metrics_url}  logs {stack.log_dir}",
            flush=True,
        )
        while not stopping:
            for name, process in stack.processes.items():
                if process.poll() is not None:
                    print(f"{name} exited with {process.returncode}; stopping", file=sys.stderr)
                    stopping = True
                    break
            time.sleep(0.5)
        return 0
    except StackError as error:
        print(f"moneypath up: {error}", file=sys.stderr)
        return 1
    finally:
        stack.stop_all()


def worker(args: argparse.Namespace) -> int:
    """Maintenance loop: expire ledger holds, add postings partitions, purge idempotency keys."""
    import asyncio
    import dataclasses
    import json

    from app.entrypoints import worker as maintenance
    from app.platform.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"moneypath worker: {error}", file=sys.stderr)
        return 2
    if args.once:
        report = asyncio.run(maintenance.run_once(settings))
        print(json.dumps(dataclasses.asdict(report)))
        return 0
    return asyncio.run(
        maintenance.run_forever(settings, interval_s=args.interval, max_cycles=args.max_cycles)
    )


def _payments_sessions() -> Any:
    from app.entrypoints import worker as maintenance
    from app.platform.settings import Settings

    _, sessions = maintenance._sessions(Settings.from_env())
    return sessions


def webhooks_dead_letters(_: argparse.Namespace) -> int:
    """List merchant webhook deliveries that exhausted their attempts (JSON lines)."""
    import asyncio
    import json

    from app.payments import api as payments_api

    for item in asyncio.run(payments_api.list_dead_letters(_payments_sessions())):
        print(json.dumps(item, default=str))
    return 0


def webhooks_replay(args: argparse.Namespace) -> int:
    """Send a dead-lettered delivery again: a fresh set of attempts, same event id."""
    import asyncio

    from app.payments import api as payments_api

    if not asyncio.run(payments_api.replay_dead_letter(_payments_sessions(), args.delivery_id)):
        print(f"moneypath webhooks replay: no dead letter {args.delivery_id}", file=sys.stderr)
        return 1
    print(f"delivery {args.delivery_id} queued again")
    return 0


def recon_upload(args: argparse.Namespace) -> int:
    """Reconcile a provider's settlement file given as a local file (not fetched)."""
    import asyncio
    import dataclasses
    import datetime
    import json

    from app.platform.errors import DomainError
    from app.reconciliation import api as reconciliation_api

    path = Path(args.file)
    if path.stat().st_size > reconciliation_api.MAX_UPLOAD_BYTES:
        print(f"moneypath recon upload: {path} is too large", file=sys.stderr)
        return 2
    try:
        day = datetime.date.fromisoformat(args.date)
        run, created = asyncio.run(
            reconciliation_api.reconcile_day(
                _payments_sessions(), None, args.provider, day,
                started_by="cli", data=path.read_bytes(),
            )
        )  # fmt: skip
    except ValueError as error:
        print(f"moneypath recon upload: {error}", file=sys.stderr)
        return 2
    except DomainError as error:
        print(f"moneypath recon upload: {error.code}: {error.detail}", file=sys.stderr)
        return 1
    print(json.dumps({**dataclasses.asdict(run), "created": created}, default=str))
    return 0


def migrate(_: argparse.Namespace) -> int:
    from app.platform.migrate import upgrade

    url = os.environ.get("DATABASE_URL")
    if not url:
        print("moneypath migrate: set DATABASE_URL", file=sys.stderr)
        return 2
    upgrade(url)
    return 0


def _scopes(values: list[str]) -> list[str]:
    # Accept `--scopes a b`, `--scopes a,b` and `--scopes "a b"` alike.
    return [scope for value in values for scope in value.replace(",", " ").split() if scope]


def clients_create(args: argparse.Namespace) -> int:
    """Create an API client (the first admin, typically) straight in the database.

    Prints the client id, the secret (shown this once) and the key id as JSON. Without
    --public-key, a new Ed25519 key pair is made and its private key written to
    --private-key-out (mode 0600); the private key is never printed. With --out, the id,
    secret, key id and key path go to that credentials file (mode 0600, for `moneypath
    call`) instead of the screen; the key goes next to it unless --private-key-out says.
    """
    import asyncio
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from app.entrypoints.bootstrap import DATABASE_SECRET
    from app.entrypoints.operator_call import write_credentials
    from app.identity import api as identity_api
    from app.platform.db import create_engine, session_factory
    from app.platform.errors import DomainError
    from app.platform.settings import Settings, SettingsError
    from app.platform.vault import DatabaseNotConfiguredError, Vault

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
    try:
        database_url = vault.database_url(DATABASE_SECRET)
    except DatabaseNotConfiguredError as error:
        print(f"moneypath clients create: {error}", file=sys.stderr)
        return 1
    if args.public_key is not None:
        public_pem = Path(args.public_key).read_text()
    else:
        private_key = Ed25519PrivateKey.generate()
        out = Path(args.private_key_out)
        out.touch(mode=0o600, exist_ok=False)
        out.write_bytes(
            private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        public_pem = (
            private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    async def create() -> identity_api.CreatedClient:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with session_factory(engine)() as session, session.begin():
                return await identity_api.create_client(
                    session, name=args.name, scopes=_scopes(args.scopes), public_key_pem=public_pem
                )
        finally:
            await engine.dispose()

    try:
        created = asyncio.run(create())
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

    from app.entrypoints.bootstrap import DATABASE_SECRET
    from app.identity import api as identity_api
    from app.platform.db import create_engine, session_factory
    from app.platform.settings import Settings
    from app.platform.vault import DatabaseNotConfiguredError, Vault

    settings = Settings.from_env()
    vault = Vault.login(settings.vault_addr, settings.vault_login)
    try:
        database_url = vault.database_url(DATABASE_SECRET)
    except DatabaseNotConfiguredError as error:
        print(f"moneypath keys rotate-pii: {error}", file=sys.stderr)
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


def bootstrap(_: argparse.Namespace) -> int:
    """Operator set-up: store the database URLs in Vault and migrate (needs a Vault token)."""
    from app.entrypoints.bootstrap import bootstrap_dev

    missing = [
        name
        for name in ("VAULT_ADDR", "VAULT_TOKEN", "DATABASE_URL", "EVIDENCE_DATABASE_URL")
        if not os.environ.get(name)
    ]
    if missing:
        print(f"moneypath bootstrap: set {', '.join(missing)}", file=sys.stderr)
        return 2
    bootstrap_dev(
        vault_addr=os.environ["VAULT_ADDR"],
        vault_token=os.environ["VAULT_TOKEN"],
        database_url=os.environ["DATABASE_URL"],
        evidence_database_url=os.environ["EVIDENCE_DATABASE_URL"],
    )
    print("database URLs stored in Vault; API migrations applied")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moneypath")
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="run PostgreSQL, OpenBao, OPA, the API and evidence")
    up_parser.add_argument("--data-dir", default=str(REPO_ROOT / ".data"))
    up_parser.add_argument("--policies", default=str(REPO_ROOT / "policies"))
    up_parser.add_argument("--workers", type=int, default=1)
    up_parser.set_defaults(run=up)
    migrate_parser = commands.add_parser("migrate", help="apply migrations to DATABASE_URL")
    migrate_parser.set_defaults(run=migrate)
    bootstrap_parser = commands.add_parser(
        "bootstrap", help="store DATABASE_URL and EVIDENCE_DATABASE_URL in Vault, then migrate"
    )
    bootstrap_parser.set_defaults(run=bootstrap)
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
    keys = commands.add_parser("keys", help="rotate keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    rotate_jwt = keys_commands.add_parser("rotate-jwt", help="rotate the token signing key")
    rotate_jwt.set_defaults(run=keys_rotate_jwt)
    rotate_pii = keys_commands.add_parser("rotate-pii", help="rotate the PII transit key")
    rotate_pii.set_defaults(run=keys_rotate_pii)
    worker_parser = commands.add_parser(
        "worker", help="run maintenance: hold expiry, partitions, idempotency-key cleanup"
    )
    worker_parser.add_argument("--once", action="store_true", help="run one cycle and exit")
    worker_parser.add_argument("--interval", type=float, default=5.0, help="seconds between cycles")
    worker_parser.add_argument("--max-cycles", type=int, default=None)
    worker_parser.set_defaults(run=worker)
    webhooks = commands.add_parser("webhooks", help="merchant webhook dead letters")
    webhooks_commands = webhooks.add_subparsers(dest="webhooks_command", required=True)
    dead = webhooks_commands.add_parser("dead-letters", help="list dead-lettered deliveries")
    dead.set_defaults(run=webhooks_dead_letters)
    replay = webhooks_commands.add_parser("replay", help="deliver a dead letter again")
    replay.add_argument("delivery_id", type=int)
    replay.set_defaults(run=webhooks_replay)
    recon = commands.add_parser("recon", help="reconcile provider settlement files")
    recon_commands = recon.add_subparsers(dest="recon_command", required=True)
    upload = recon_commands.add_parser("upload", help="reconcile a settlement file from disk")
    upload.add_argument("--provider", required=True)
    upload.add_argument("--date", required=True, help="settlement date, YYYY-MM-DD")
    upload.add_argument("file")
    upload.set_defaults(run=recon_upload)
    add_call_parser(commands)
    add_drill_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())

"""The `evidence` command: export an offline bundle, verify one, migrate, checkpoint.

`evidence export` reads the service's own database (its URL comes from OpenBao, like the
service's) and the public checkpoint keys; `evidence verify` needs nothing but the file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from app.platform.db import create_engine, session_factory
from app.platform.errors import DomainError, ValidationError
from app.platform.settings import SettingsError
from app.platform.vault import Vault
from evidence import database, records, service, tree, trust
from evidence.checkpoints import CheckpointError, public_key_from_json
from evidence.config import EvidenceSettings
from evidence.signing import TransitSigner
from evidence.verify import verify_bundle

MAX_BUNDLE_BYTES = 2 * 1024 * 1024 * 1024


def _connect() -> tuple[EvidenceSettings, Vault, str]:
    settings = EvidenceSettings.from_env()
    vault = Vault.login(settings.platform.vault_addr, settings.platform.vault_login)
    return settings, vault, database.database_url(vault)


async def _export(args: argparse.Namespace) -> dict[str, Any] | None:
    settings, vault, url = _connect()
    signer = TransitSigner(vault, settings.signing_key_name)
    keys = [key.as_json() for key in signer.refresh()]
    filters = service.Filters(
        collected_from=records.parse_time(args.start) if args.start else None,
        collected_to=records.parse_time(args.end) if args.end else None,
    )
    engine = create_engine(url, pool_size=1)
    try:
        async with session_factory(engine)() as session, session.begin():
            return await service.export_bundle(session, filters, args.max_records, keys)
    finally:
        await engine.dispose()


def export(args: argparse.Namespace) -> int:
    try:
        bundle = asyncio.run(_export(args))
    except (DomainError, SettingsError, database.DatabaseNotConfiguredError) as error:
        print(f"evidence export: {error}", file=sys.stderr)
        return 1
    if bundle is None:
        print("evidence export: no checkpoint has been issued yet", file=sys.stderr)
        return 1
    text = json.dumps(bundle, indent=1, sort_keys=True)
    if args.output:
        Path(args.output).write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")
    return 0


def _pinned_keys(path: str | None) -> list[bytes]:
    """Keys from a PEM file, or from a saved /v1/checkpoints/public-key answer."""
    if path is None:
        return []
    content = Path(path).read_text()
    if content.lstrip().startswith("{"):
        document = json.loads(content)
        entries = document.get("keys", [document])
        return [public_key_from_json(entry) for entry in entries]
    return [public_key_from_json({"pem": content})]


def verify(args: argparse.Namespace) -> int:
    path = Path(args.bundle)
    try:
        if path.stat().st_size > MAX_BUNDLE_BYTES:
            print(f"evidence verify: {path} is larger than 2 GiB", file=sys.stderr)
            return 2
        bundle = json.loads(path.read_text())
        pinned = _pinned_keys(args.key)
    except (OSError, ValueError, CheckpointError) as error:
        print(f"evidence verify: cannot read input: {error}", file=sys.stderr)
        return 2
    report = verify_bundle(bundle, pinned)
    trust = "pinned key" if report.key_pinned else "key taken from the bundle (use --key to pin)"
    if report.ok:
        print(
            f"OK: {report.records_checked} records collected in {report.window}, complete "
            f"and unaltered, against the checkpoint of tree size {report.tree_size} signed "
            f"by {report.key_id} ({trust})"
        )
        return 0
    print(f"FAILED: {len(report.problems)} problem(s)", file=sys.stderr)
    for problem in report.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1


def migrate(_args: argparse.Namespace) -> int:
    try:
        settings = EvidenceSettings.from_env()
        vault = Vault.login(settings.platform.vault_addr, settings.platform.vault_login)
        url = database.migration_database_url(vault)
    except (SettingsError, database.DatabaseNotConfiguredError) as error:
        print(f"evidence migrate: {error}", file=sys.stderr)
        return 1
    database.upgrade(url)
    return 0


async def _checkpoint() -> str:
    settings, vault, url = _connect()
    signer = TransitSigner(vault, settings.signing_key_name)
    signer.ensure_key()
    engine = create_engine(url, pool_size=1)
    try:
        issued = await tree.issue_checkpoint(session_factory(engine), signer, settings.origin)
    finally:
        await engine.dispose()
    return "log unchanged since the last checkpoint" if issued is None else issued.note


def checkpoint(_args: argparse.Namespace) -> int:
    try:
        print(asyncio.run(_checkpoint()), end="")
    except (DomainError, SettingsError, database.DatabaseNotConfiguredError) as error:
        print(f"evidence checkpoint: {error}", file=sys.stderr)
        return 1
    return 0


def rotate_key(_args: argparse.Namespace) -> int:
    try:
        settings, vault, _ = _connect()
        keys = TransitSigner(vault, settings.signing_key_name).rotate()
    except (DomainError, SettingsError, database.DatabaseNotConfiguredError) as error:
        print(f"evidence rotate-key: {error}", file=sys.stderr)
        return 1
    print(f"checkpoints are now signed by {keys[0].key_id} (version {keys[0].version})")
    return 0


def trust_register(args: argparse.Namespace) -> int:
    """Trust a client's records of the given types (dev stack, tests, CI's own stack)."""
    opa_url = args.opa_url or os.environ.get("OPA_URL") or "http://127.0.0.1:8181"
    try:
        trust.register_submitter(opa_url, args.client_id, args.types)
    except ValueError as error:
        print(f"evidence trust register: {error}", file=sys.stderr)
        return 2
    except httpx.HTTPError as error:
        print(f"evidence trust register: OPA refused or is unreachable ({error})", file=sys.stderr)
        return 1
    print(f"{args.client_id} is trusted for {' '.join(args.types)}")
    return 0


def _time_argument(value: str) -> str:
    try:
        records.parse_time(value)
    except ValidationError as error:
        raise argparse.ArgumentTypeError(error.detail) from None
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evidence", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    export_parser = commands.add_parser(
        "export", help="write an offline-verifiable bundle (records, proofs, checkpoint, keys)"
    )
    export_parser.add_argument("--from", dest="start", type=_time_argument, default=None)
    export_parser.add_argument("--to", dest="end", type=_time_argument, default=None)
    export_parser.add_argument("--output", "-o", default=None, help="file (default stdout)")
    export_parser.add_argument("--max-records", type=int, default=1_000_000)
    export_parser.set_defaults(handler=export)
    verify_parser = commands.add_parser("verify", help="check a bundle offline")
    verify_parser.add_argument("bundle")
    verify_parser.add_argument(
        "--key", default=None, help="trusted public key: PEM, or the public-key endpoint's JSON"
    )
    verify_parser.set_defaults(handler=verify)
    commands.add_parser("migrate", help="migrate the evidence database").set_defaults(
        handler=migrate
    )
    commands.add_parser("checkpoint", help="sign the current tree head now").set_defaults(
        handler=checkpoint
    )
    commands.add_parser(
        "rotate-key", help="rotate the checkpoint signing key in OpenBao (old keys stay published)"
    ).set_defaults(handler=rotate_key)
    trust_parser = commands.add_parser(
        "trust-register",
        help="trust a client's records of some types, through OPA's data API (not in "
        "production, where only policies/trust/evidence_submitters.json counts)",
    )
    trust_parser.add_argument("--client-id", required=True)
    trust_parser.add_argument(
        "--types", nargs="+", required=True, help="record type patterns, e.g. 'ci.**'"
    )
    trust_parser.add_argument("--opa-url", default=None, help="default $OPA_URL")
    trust_parser.set_defaults(handler=trust_register)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

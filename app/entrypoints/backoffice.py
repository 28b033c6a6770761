"""`moneypath webhooks` and `moneypath recon`: back-office work on the money data.

Merchant webhook dead letters (list, send again) and reconciling a settlement file an
operator has on disk. They reach the database with the worker's credentials.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


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


def add_webhooks_parser(commands: Any) -> None:
    webhooks = commands.add_parser("webhooks", help="merchant webhook dead letters")
    webhooks_commands = webhooks.add_subparsers(dest="webhooks_command", required=True)
    dead = webhooks_commands.add_parser("dead-letters", help="list dead-lettered deliveries")
    dead.set_defaults(run=webhooks_dead_letters)
    replay = webhooks_commands.add_parser("replay", help="deliver a dead letter again")
    replay.add_argument("delivery_id", type=int)
    replay.set_defaults(run=webhooks_replay)


def add_recon_parser(commands: Any) -> None:
    recon = commands.add_parser("recon", help="reconcile provider settlement files")
    recon_commands = recon.add_subparsers(dest="recon_command", required=True)
    upload = recon_commands.add_parser("upload", help="reconcile a settlement file from disk")
    upload.add_argument("--provider", required=True)
    upload.add_argument("--date", required=True, help="settlement date, YYYY-MM-DD")
    upload.add_argument("file")
    upload.set_defaults(run=recon_upload)

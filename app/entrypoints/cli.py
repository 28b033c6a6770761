"""The `moneypath` command: run the dev stack, migrate, and administer the platform.

This module runs the stack, the worker, migrations and bootstrap, and assembles the parser;
each other command group lives with its kind: `identity_commands` (clients, keys),
`backoffice` (webhooks, recon), `operator_call` (call) and `drills` (drill).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from app.entrypoints.backoffice import add_recon_parser, add_webhooks_parser
from app.entrypoints.devstack import Ports, Stack
from app.entrypoints.drills.catalog import add_drill_parser
from app.entrypoints.identity_commands import add_clients_parser, add_keys_parser
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


def migrate(_: argparse.Namespace) -> int:
    from app.platform.migrate import upgrade

    url = os.environ.get("DATABASE_URL")
    if not url:
        print("moneypath migrate: set DATABASE_URL", file=sys.stderr)
        return 2
    upgrade(url)
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
    add_clients_parser(commands)
    add_keys_parser(commands)
    worker_parser = commands.add_parser(
        "worker", help="run maintenance: hold expiry, partitions, idempotency-key cleanup"
    )
    worker_parser.add_argument("--once", action="store_true", help="run one cycle and exit")
    worker_parser.add_argument("--interval", type=float, default=5.0, help="seconds between cycles")
    worker_parser.add_argument("--max-cycles", type=int, default=None)
    worker_parser.set_defaults(run=worker)
    add_webhooks_parser(commands)
    add_recon_parser(commands)
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

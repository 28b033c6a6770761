"""The `moneypath` command: run the dev stack, migrate, and administer the platform."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from app.entrypoints.devstack import REPO_ROOT, Ports, Stack, StackError


def _ports_from_env() -> Ports:
    defaults = Ports()
    return Ports(
        postgres=int(os.environ.get("PG_PORT", defaults.postgres)),
        vault=int(os.environ.get("VAULT_PORT", defaults.vault)),
        opa=int(os.environ.get("OPA_PORT", defaults.opa)),
        api=int(os.environ.get("API_PORT", defaults.api)),
        evidence=int(os.environ.get("EVIDENCE_PORT", defaults.evidence)),
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
            f"opa {stack.opa_url}  vault {stack.vault_addr}  logs {stack.log_dir}",
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


def migrate(_: argparse.Namespace) -> int:
    from app.platform.migrate import upgrade

    url = os.environ.get("DATABASE_URL")
    if not url:
        print("moneypath migrate: set DATABASE_URL", file=sys.stderr)
        return 2
    upgrade(url)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())

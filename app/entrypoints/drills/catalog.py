"""`moneypath drill NAME`: the list of drills, and running one on a stack of its own."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.entrypoints.devstack import Ports, Stack
from app.entrypoints.drills import faults, keys
from app.entrypoints.drills.harness import create_client, write_evidence
from app.entrypoints.drills.report import DrillReport
from app.platform.client_credentials import ClientCredentials

Drill = Callable[[Stack, DrillReport, ClientCredentials], None]

DRILLS: dict[str, Drill] = {
    "vault-down": lambda stack, report, _: faults.dependency_down(
        stack, report, "openbao", "vault"
    ),
    "opa-down": lambda stack, report, _: faults.dependency_down(stack, report, "opa", "opa"),
    "db-restart": faults.db_restart,
    "key-compromise": keys.key_compromise,
}


def run_on(stack: Stack, name: str) -> DrillReport:
    """Run drill `name` against a running `stack` this process controls; write evidence."""
    report = DrillReport(name)
    operator = create_client(stack, f"drill-{name}", ["ledger:write", "ledger:read"])
    DRILLS[name](stack, report, operator)
    # Evidence goes in last, after the faulty service is back; its writer is made fresh
    # because a restarted dev Vault or database may have lost earlier state.
    writer = create_client(stack, f"drill-{name}-evidence", ["evidence:write"])
    write_evidence(report, stack, writer)
    print(report.summary(), flush=True)
    return report


def run_drill(name: str, root: Path | None = None) -> DrillReport:
    """Start a throwaway stack on free ports, run drill `name` against it, stop it."""
    with tempfile.TemporaryDirectory(prefix="drill-") as scratch:
        stack = Stack(root=root or Path(scratch), ports=Ports.free(), watch_policies=False)
        with stack.running(apps=True):
            return run_on(stack, name)


def run(args: argparse.Namespace) -> int:
    report = run_drill(args.drill, Path(args.data_dir) if args.data_dir else None)
    return 0 if report.passed else 1


def add_drill_parser(commands: Any) -> None:
    drill = commands.add_parser(
        "drill", help="inject a real fault into a throwaway stack and check detection"
    )
    drill.add_argument("drill", choices=sorted(DRILLS))
    drill.add_argument("--data-dir", help="where the drill's stack keeps its files")
    drill.set_defaults(run=run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="moneypath drill")
    parser.add_argument("drill", choices=sorted(DRILLS))
    parser.add_argument("--data-dir")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

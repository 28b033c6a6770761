"""Kept for `python -m runbooks.drills NAME`; the drills live in `app.entrypoints.drills`
and `moneypath drill NAME` is the command to use."""

from __future__ import annotations

import sys

from app.entrypoints.drills.catalog import DRILLS, run_drill, run_on
from app.entrypoints.drills.report import DrillReport

__all__ = ["DRILLS", "DrillReport", "main", "run_drill", "run_on"]


def main(argv: list[str] | None = None) -> int:
    from app.entrypoints.drills.catalog import main as drill_main

    return drill_main(argv)


if __name__ == "__main__":
    sys.exit(main())

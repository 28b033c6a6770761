"""What a developer sees while and after a run: progress lines and the summary table.

The table (gate, result, findings, time, evidence id) is printed at the end of every run
and, in GitHub Actions, appended to `$GITHUB_STEP_SUMMARY`, so the job page shows it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

PROGRESS_EVERY_S = 30.0


@contextmanager
def progress(gate: str, every_s: float = PROGRESS_EVERY_S, echo: bool = True) -> Iterator[None]:
    """Print `gate X still running (N s)` every `every_s` while the block runs."""
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(every_s):
            print(f"gate {gate:<13} still running ({time.monotonic() - started:.0f} s)", flush=True)

    ticker = threading.Thread(target=tick, name=f"progress-{gate}", daemon=True)
    if echo:
        ticker.start()
    try:
        yield
    finally:
        done.set()
        if echo:
            ticker.join(timeout=5)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(
    rows: Sequence[tuple[str, str, Mapping[str, int], int, str | None]], run_line: str
) -> str:
    """A Markdown table: one row per (gate, result, finding counts, duration_ms, evidence)."""
    lines = [
        "| gate | result | findings | time | evidence |",
        "|---|---|---|---:|---|",
    ]
    for gate, result, counts, duration_ms, evidence in rows:
        findings = ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"
        mark = "pass" if result == "pass" else f"**{result}**"
        lines.append(
            f"| {_cell(gate)} | {mark} | {_cell(findings)} | {duration_ms / 1000:.1f} s "
            f"| {_cell(evidence or '-')} |"
        )
    return "\n".join([f"### {run_line}", "", *lines, ""])


def publish(markdown: str, env: Mapping[str, str] | None = None) -> None:
    """Print the table, and append it to the GitHub job summary when there is one."""
    print(markdown)
    target = (os.environ if env is None else env).get("GITHUB_STEP_SUMMARY")
    if target:
        with Path(target).open("a") as summary:
            summary.write(markdown + "\n")

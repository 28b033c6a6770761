"""The run's summary table (printed and in the GitHub job summary) and progress lines."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.summary import progress, publish, table


def test_table_lists_gate_result_findings_time_and_evidence_when_rendered() -> None:
    markdown = table(
        [
            ("ruff", "pass", {"violations": 0}, 1200, "evd_1"),
            ("bandit", "fail", {"high": 1, "low": 2}, 3400, None),
        ],
        "moneypath pipeline run r1: fail",
    )
    lines = markdown.splitlines()
    assert lines[0] == "### moneypath pipeline run r1: fail"
    assert "| gate | result | findings | time | evidence |" in lines
    assert "| ruff | pass | violations 0 | 1.2 s | evd_1 |" in lines
    assert "| bandit | **fail** | high 1, low 2 | 3.4 s | - |" in lines


def test_publish_appends_to_the_github_step_summary_when_it_is_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    publish("| a |", {"GITHUB_STEP_SUMMARY": str(summary)})
    assert summary.read_text() == "earlier step\n| a |\n"
    assert "| a |" in capsys.readouterr().out


def test_progress_prints_while_a_long_gate_runs(capsys: pytest.CaptureFixture[str]) -> None:
    with progress("pytest", every_s=0.05):
        time.sleep(0.3)
    out = capsys.readouterr().out
    assert "gate pytest        still running" in out
    with progress("ruff", every_s=0.05, echo=False):
        time.sleep(0.15)
    assert capsys.readouterr().out == ""

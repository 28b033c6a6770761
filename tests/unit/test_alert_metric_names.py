"""Every metric an alert or recording rule reads is one our processes really export."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

REPO = Path(__file__).resolve().parents[2]
# A series name in PromQL: ours all start with moneypath_ (recording rules use a colon).
SERIES = re.compile(r"\bmoneypath_[a-z0-9_]+\b")


def _exported() -> set[str]:
    # Importing the API's and the worker's entry points registers every metric they serve.
    import app.entrypoints.asgi
    import app.entrypoints.worker  # noqa: F401

    names: set[str] = set()
    for collector in list(REGISTRY._collector_to_names):
        for family in collector.describe() if hasattr(collector, "describe") else []:
            names.add(family.name)
            suffixes = {
                "counter": ("_total", "_created"),
                "histogram": ("_bucket", "_count", "_sum", "_created"),
                "summary": ("_count", "_sum", "_created"),
            }.get(family.type, ())
            names.update(family.name + suffix for suffix in suffixes)
    return names


def _referenced(rules_file: Path) -> set[str]:
    document: dict[str, Any] = yaml.safe_load(rules_file.read_text())
    found: set[str] = set()
    for group in document["groups"]:
        for rule in group["rules"]:
            found.update(SERIES.findall(str(rule["expr"])))
    return found


def test_every_series_a_rule_reads_is_exported_when_rules_are_loaded() -> None:
    exported = _exported()
    assert "moneypath_webhook_dead_letters_total" in exported
    for rules_file in sorted((REPO / "alerts").glob("*.yml")):
        referenced = _referenced(rules_file)
        assert referenced
        missing = sorted(referenced - exported)
        assert not missing, f"{rules_file.name} reads series nobody exports: {missing}"


def test_a_misspelt_series_is_caught_when_a_rule_reads_it() -> None:
    assert "moneypath_webhook_dead_letter_total" not in _exported()

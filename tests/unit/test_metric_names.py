"""Every money-path metric is named in the README, so an operator can find what to graph."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from app.platform import metrics

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_metric_in_the_metrics_module_is_in_the_readme_when_declared() -> None:
    names = [
        value._name for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)
    ]
    assert len(names) >= 12
    text = README.read_text()
    missing = [name for name in names if f"`{name}" not in text]
    assert not missing, f"name these in the README's metrics table: {missing}"

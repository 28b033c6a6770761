"""metrics.child: a remembered `labels()` child records into the same series."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from app.platform import metrics


def test_child_is_the_labels_child_when_called_twice() -> None:
    registry = CollectorRegistry()
    counter = Counter("test_child_total", "test", ["outcome"], registry=registry)
    first = metrics.child(counter, outcome="allow")
    assert metrics.child(counter, outcome="allow") is first
    assert first is counter.labels(outcome="allow")
    metrics.child(counter, outcome="allow").inc()
    metrics.child(counter, outcome="deny").inc(2)
    assert registry.get_sample_value("test_child_total", {"outcome": "allow"}) == 1
    assert registry.get_sample_value("test_child_total", {"outcome": "deny"}) == 2


def test_child_still_records_when_the_cache_is_full() -> None:
    registry = CollectorRegistry()
    counter = Counter("test_child_full_total", "test", ["code"], registry=registry)
    saved = dict(metrics._children)
    try:
        for index in range(metrics._CHILD_CACHE_LIMIT - len(metrics._children)):
            metrics._children[(counter, (("code", f"filler-{index}"),))] = counter
        metrics.child(counter, code="late").inc()
        assert len(metrics._children) == metrics._CHILD_CACHE_LIMIT
        assert registry.get_sample_value("test_child_full_total", {"code": "late"}) == 1
    finally:
        metrics._children.clear()
        metrics._children.update(saved)

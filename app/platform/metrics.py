"""The money-path metrics (prometheus-client), and small functions to record them.

Every domain records through the functions here rather than touching the metric objects,
so names, labels and units live in one place and the README's table can be checked
against this module. Label values are always from small closed sets (codes, outcomes,
provider names): never ids, amounts or anything a client chooses freely.
"""

from __future__ import annotations

from prometheus_client import Counter

DEPENDENCY_UNAVAILABLE = Counter(
    "moneypath_dependency_unavailable_total",
    "Requests answered 503 because a dependency (db, opa, vault) could not answer.",
    ["dependency"],
)


def record_dependency_unavailable(dependency: str) -> None:
    DEPENDENCY_UNAVAILABLE.labels(dependency=dependency).inc()

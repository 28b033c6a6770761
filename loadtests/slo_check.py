"""Holding a Locust run to `slo.yml`: percentiles per endpoint, error rate, throughput.

Kept apart from the locustfile so it can be read (and tested) without Locust's runtime:
`evaluate(slo, figures)` takes plain numbers and returns one verdict per objective.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class EndpointFigures:
    name: str
    requests: int
    failures: int
    p50_ms: int
    p95_ms: int
    p99_ms: int


@dataclass(frozen=True)
class Verdict:
    objective: str
    target: str
    measured: str
    met: bool


def load_slo(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict) or not isinstance(document.get("endpoints"), dict):
        raise ValueError(f"{path}: expected a mapping with an `endpoints` mapping")
    return document


def evaluate(
    slo: dict[str, Any],
    endpoints: list[EndpointFigures],
    *,
    total_requests: int,
    total_failures: int,
    duration_s: float,
) -> list[Verdict]:
    """One verdict per objective; an endpoint in the SLO that saw no request misses it."""
    verdicts: list[Verdict] = []
    by_name = {figures.name: figures for figures in endpoints}
    for name, targets in slo["endpoints"].items():
        figures = by_name.get(name)
        for percentile in ("p95_ms", "p99_ms"):
            if percentile not in targets:
                continue
            limit = int(targets[percentile])
            if figures is None or figures.requests == 0:
                verdicts.append(
                    Verdict(f"{name} {percentile}", f"<= {limit}", "no requests", False)
                )
                continue
            measured = getattr(figures, percentile)
            verdicts.append(
                Verdict(f"{name} {percentile}", f"<= {limit}", str(measured), measured <= limit)
            )
    error_rate = 100.0 * total_failures / total_requests if total_requests else 100.0
    error_max = float(slo.get("error_rate_max_percent", 1))
    verdicts.append(
        Verdict("error rate %", f"<= {error_max}", f"{error_rate:.2f}", error_rate <= error_max)
    )
    throughput = total_requests / duration_s if duration_s > 0 else 0.0
    minimum = float(slo.get("min_throughput_rps", 0))
    verdicts.append(
        Verdict("throughput rps", f">= {minimum}", f"{throughput:.1f}", throughput >= minimum)
    )
    return verdicts


def table(endpoints: list[EndpointFigures], verdicts: list[Verdict]) -> str:
    """The summary printed at the end of a run."""
    width = max([len(e.name) for e in endpoints] + [len(v.objective) for v in verdicts] + [8])
    lines = [f"{'endpoint':<{width}}  {'reqs':>6} {'fails':>6} {'p50':>6} {'p95':>6} {'p99':>6}"]
    for e in sorted(endpoints, key=lambda e: e.name):
        lines.append(
            f"{e.name:<{width}}  {e.requests:>6} {e.failures:>6} "
            f"{e.p50_ms:>6} {e.p95_ms:>6} {e.p99_ms:>6}"
        )
    lines.append("")
    lines.append(f"{'objective':<{width}}  {'target':>10} {'measured':>12}  verdict")
    for v in verdicts:
        verdict = "ok" if v.met else "MISSED"
        lines.append(f"{v.objective:<{width}}  {v.target:>10} {v.measured:>12}  {verdict}")
    return "\n".join(lines)

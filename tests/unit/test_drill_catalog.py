"""The drill catalog and the runbooks agree: every `moneypath drill NAME` a runbook tells the
on-call to run exists, and every drill maps to controls beyond the incident-response base."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.entrypoints.drills.catalog import DRILLS
from app.entrypoints.drills.report import BASE_CONTROLS, controls_for

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
_DRILL = re.compile(r"moneypath drill ([a-z][a-z-]*)")


def test_every_drill_a_runbook_names_is_in_the_catalog_when_the_page_gives_one() -> None:
    named = {
        (page.name, drill)
        for page in RUNBOOKS.glob("*.md")
        for drill in _DRILL.findall(page.read_text())
    }
    assert {"provider-outage", "double-charge"} <= {drill for _, drill in named}
    missing = sorted((page, drill) for page, drill in named if drill not in DRILLS)
    assert not missing, f"runbooks name drills that do not exist: {missing}"


@pytest.mark.parametrize("drill", sorted(DRILLS))
def test_drill_maps_to_controls_beyond_the_base_when_it_writes_evidence(drill: str) -> None:
    controls = controls_for(drill)
    assert set(BASE_CONTROLS) < set(controls)

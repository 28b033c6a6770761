"""Which command lines narrow a run's scope (and so can back no promotion)."""

from __future__ import annotations

import argparse

import pytest

from pipeline.__main__ import _scope
from pipeline.gates import GATES


def _args(**given: object) -> argparse.Namespace:
    defaults: dict[str, object] = {
        "packages": None,
        "tests": None,
        "waivers": None,
        "advisory_db": None,
        "policy_dir": None,
        "commit": None,
        "gates": None,
    }
    return argparse.Namespace(**{**defaults, **given})


def test_scope_is_default_when_no_narrowing_flag_is_given() -> None:
    assert _scope(_args()) == {"default": True, "narrowed_by": []}
    assert _scope(_args(gates=[",".join(GATES)]))["default"] is True


@pytest.mark.parametrize(
    ("given", "flag"),
    [
        ({"packages": ["app"]}, "--packages"),
        ({"tests": ["tests/unit"]}, "--tests"),
        ({"waivers": "/tmp/w"}, "--waivers"),
        ({"advisory_db": "/tmp/vulns"}, "--advisory-db"),
        ({"policy_dir": "/tmp/p"}, "--policy-dir"),
        ({"commit": "0" * 40}, "--commit"),
        ({"gates": ["ruff", "bandit"]}, "--gates"),
    ],
)
def test_scope_names_the_flag_when_a_run_is_narrowed(given: dict[str, object], flag: str) -> None:
    assert _scope(_args(**given)) == {"default": False, "narrowed_by": [flag]}

"""The image's runtime lock is the full lock's subset: same versions, same hashes, no dev tools."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_PIN = re.compile(r"^([a-z0-9_.-]+)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})+)", re.M)


def _pins(name: str) -> dict[str, tuple[str, frozenset[str]]]:
    text = (REPO / name).read_text()
    return {
        package: (version, frozenset(re.findall(r"sha256:([0-9a-f]{64})", hashes)))
        for package, version, hashes in _PIN.findall(text)
    }


def test_runtime_lock_pins_the_same_versions_and_hashes_as_the_full_lock() -> None:
    full, runtime = _pins("requirements.lock"), _pins("requirements-runtime.lock")
    assert runtime, "the runtime lock pins nothing"
    drifted = {name: pin for name, pin in runtime.items() if full.get(name) != pin}
    assert drifted == {}, "run `make lock`: the runtime lock drifted from requirements.lock"


def test_runtime_lock_leaves_out_the_development_tools() -> None:
    runtime = _pins("requirements-runtime.lock")
    assert {"starlette", "sqlalchemy", "psycopg", "hvac"} <= set(runtime)
    assert not {"pytest", "mypy", "ruff", "bandit", "locust", "schemathesis"} & set(runtime)

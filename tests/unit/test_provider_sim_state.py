"""The simulator keeps what really happened across a restart, within its bounds; and it
stays outside app (import-linter refuses an app module importing it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from provider_sim.engine import Engine

REPO = Path(__file__).resolve().parents[2]


def test_operations_survive_a_restart_when_state_file_is_set(tmp_path: Path) -> None:
    state = tmp_path / "sim.jsonl"
    first = Engine(max_records=100, state_file=state)
    made = first.authorize(
        "acme",
        "k1",
        token="tok_visa",
        amount_minor=500,
        currency="EUR",
        capture=False,
        id_prefix="ch",
    )
    first.capture("acme", "k2", charge_id=made.charge_id or "", amount_minor=200, currency="EUR")
    with state.open("a") as torn:
        torn.write('{"t": "op", "provider"')  # a kill -9 mid-write
    second = Engine(max_records=100, state_file=state)
    replayed = second.find("acme", "k1")
    assert replayed is not None
    assert replayed.charge_id == made.charge_id
    charge = second.charge("acme", made.charge_id)
    assert charge is not None
    assert charge.captured_minor == 200
    again = second.authorize(
        "acme",
        "k1",
        token="tok_visa",
        amount_minor=500,
        currency="EUR",
        capture=False,
        id_prefix="ch",
    )
    assert again.charge_id == made.charge_id  # the key is still honoured after the restart


def test_memory_stays_bounded_when_more_operations_than_the_limit_arrive() -> None:
    engine = Engine(max_records=100, state_file=None)
    for number in range(250):
        engine.payout(
            "globex",
            f"k{number}",
            bank_token="btok",
            amount_minor=1,
            currency="EUR",
            id_prefix="gxt",
        )
    assert len(engine.operations) == 100
    assert engine.find("globex", "k0") is None
    assert engine.find("globex", "k249") is not None


def test_import_linter_fails_when_app_imports_the_simulator(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    for name in ("app", "evidence", "pipeline", "provider_sim", "architecture"):
        shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    (copy / "app" / "providers" / "cheat.py").write_text("import provider_sim.engine\n")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "app.providers.cheat -> provider_sim.engine" in result.stdout

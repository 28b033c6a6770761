"""Every drill really injects its fault into a running stack; the stack detects it and
recovers, the ledger invariants hold afterwards, and the drill's `ops.drill` evidence
record can be found by control."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.entrypoints.devstack import Ports, Stack
from app.entrypoints.drills.catalog import DRILLS, run_on
from app.entrypoints.drills.harness import create_client
from app.platform.signed_client import SignedClient


@pytest.fixture(scope="module")
def drill_stack() -> Iterator[Stack]:
    """One stack of its own for the drills: they stop, kill and restart its services.

    A write cut off by the database outage keeps its Idempotency-Key claimed until the
    stale-claim window passes; 10 s instead of 60 s keeps the db-restart drill short."""
    with (
        pytest.MonkeyPatch.context() as patch,
        tempfile.TemporaryDirectory(prefix="drills-") as scratch,
    ):
        patch.setenv("IDEMPOTENCY_STALE_CLAIM_S", "10")
        # The payment drills wait for the breaker's reset and the recovery worker's age;
        # shorter settings keep them to seconds (the drills work with the defaults too).
        patch.setenv("PROVIDER_BREAKER_RESET_MS", "3000")
        patch.setenv("PROVIDER_AUTHORIZE_TIMEOUT_MS", "1500")
        patch.setenv("PAYMENTS_RECOVERY_AFTER_S", "2")
        stack = Stack(root=Path(scratch), ports=Ports.free(), watch_policies=False)
        with stack.running(apps=True):
            yield stack


def _records(stack: Stack, control: str) -> list[dict[str, object]]:
    auditor = create_client(stack, "drill-auditor", ["evidence:read"])
    with (
        httpx.Client(base_url=stack.api_url, timeout=10) as issuer,
        SignedClient(auditor, base_url=stack.evidence_url, token_http=issuer) as evidence,
    ):
        response = evidence.get("/v1/evidence", params={"control": control, "type": "ops.drill"})
    assert response.status_code == 200, response.text
    data: list[dict[str, object]] = response.json()["data"]
    return data


@pytest.mark.parametrize("drill", sorted(DRILLS))
def test_drill_detects_the_fault_recovers_and_leaves_evidence_when_run(
    drill: str, drill_stack: Stack
) -> None:
    report = run_on(drill_stack, drill)

    assert report.detected_after_s is not None, report.steps
    assert report.recovered_after_s is not None, report.steps
    assert report.passed, report.summary()
    assert report.evidence_id is not None
    found = _records(drill_stack, "PCI-DSS-4.0.1:12.10.2")
    mine = [record for record in found if record["id"] == report.evidence_id]
    assert len(mine) == 1
    assert mine[0]["result"] == "pass"
    assert mine[0]["details"]["drill"] == drill  # type: ignore[index]

"""Reconciliation's settings read from the environment: the memory a run's statements get
(`RECON_WORK_MEM_MB`), checked and bounded before any run starts."""

from __future__ import annotations

import pytest

from app.platform.errors import ValidationError
from app.reconciliation import runs


def test_work_mem_is_512_mb_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECON_WORK_MEM_MB", raising=False)
    assert runs.work_mem_mb_from_env() == 512 == runs.DEFAULT_WORK_MEM_MB


@pytest.mark.parametrize("value", ["4", "64", "400", "4096"])
def test_work_mem_is_the_setting_when_within_bounds(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("RECON_WORK_MEM_MB", value)
    assert runs.work_mem_mb_from_env() == int(value)


@pytest.mark.parametrize("value", ["0", "3", "-512", "4097", "1000000"])
def test_work_mem_is_refused_when_out_of_bounds(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("RECON_WORK_MEM_MB", value)
    with pytest.raises(ValidationError, match=r"RECON_WORK_MEM_MB must lie in \[4, 4096\]"):
        runs.work_mem_mb_from_env()


@pytest.mark.parametrize("value", ["", "512MB", "1.5", "lots", "512; SET role postgres"])
def test_work_mem_is_refused_when_not_an_integer(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("RECON_WORK_MEM_MB", value)
    with pytest.raises(ValidationError, match="RECON_WORK_MEM_MB must be an integer"):
        runs.work_mem_mb_from_env()

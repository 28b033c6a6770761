"""The import-linter contracts hold, catch a forbidden import, and cover every private module."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOMAINS = ("identity", "ledger", "payments", "risk", "providers", "reconciliation")
PUBLIC = {"__init__", "api", "events"}


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_import_contracts_are_kept_on_this_tree() -> None:
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-2000:]


def test_import_linter_fails_when_domain_rules_import_sqlalchemy(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    for name in ("app", "evidence", "pipeline"):
        shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    (copy / "app" / "risk" / "domain.py").write_text("import sqlalchemy\n")
    result = _lint_imports(copy)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert "app.risk.domain -> sqlalchemy" in result.stdout


def test_import_linter_fails_when_evidence_imports_a_domain(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    for name in ("app", "evidence", "pipeline"):
        shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    (copy / "evidence" / "leak.py").write_text("import app.ledger\n")
    result = _lint_imports(copy)
    assert result.returncode != 0
    assert "evidence.leak -> app.ledger" in result.stdout


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_private_module_of_a_domain_is_protected(domain: str) -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    protected = {
        module
        for contract in config["tool"]["importlinter"]["contracts"]
        if contract["type"] == "protected"
        for module in contract["protected_modules"]
    }
    package = REPO / "app" / domain
    private = {
        f"app.{domain}.{path.stem}" for path in package.glob("*.py") if path.stem not in PUBLIC
    } | {
        f"app.{domain}.{path.name}"
        for path in package.iterdir()
        if path.is_dir() and (path / "__init__.py").exists()
    }
    missing = sorted(private - protected)
    assert not missing, f"add a protected contract for {missing} in pyproject.toml"

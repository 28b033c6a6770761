"""The import-linter contracts hold, catch a forbidden import, and cover every private module."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from app.domains import DOMAINS, PUBLIC_MODULES, ROUTES_MODULE
from architecture.import_contracts import DomainsContract

REPO = Path(__file__).resolve().parents[2]
PUBLIC = {"__init__", *PUBLIC_MODULES, ROUTES_MODULE}


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
    for name in ("app", "evidence", "pipeline", "architecture"):
        shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    (copy / "app" / "risk" / "domain.py").write_text("import sqlalchemy\n")
    result = _lint_imports(copy)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert "app.risk.domain -> sqlalchemy" in result.stdout


def test_import_linter_fails_when_evidence_imports_a_domain(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    for name in ("app", "evidence", "pipeline", "architecture"):
        shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    (copy / "evidence" / "leak.py").write_text("import app.ledger\n")
    result = _lint_imports(copy)
    assert result.returncode != 0
    assert "evidence.leak -> app.ledger" in result.stdout


def _derived_protection() -> set[str]:
    contract = DomainsContract(
        name="domains",
        session_options={"root_packages": ["app"], "include_external_packages": True},
        contract_options={"registry": "app.domains"},
    )
    graph = grimp.build_graph("app", include_external_packages=True)
    return {
        module
        for derived in contract.derived(graph)
        for module in derived.contract_options.get("protected_modules", [])
    }


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_private_module_of_a_domain_is_protected(domain: str) -> None:
    protected = _derived_protection()
    package = REPO / "app" / domain
    private = {
        f"app.{domain}.{path.stem}" for path in package.glob("*.py") if path.stem not in PUBLIC
    } | {
        f"app.{domain}.{path.name}"
        for path in package.iterdir()
        if path.is_dir() and (path / "__init__.py").exists()
    }
    missing = sorted(private - protected)
    assert not missing, f"the domains contract leaves {missing} unprotected"


# ---- adding a domain is one edit ----------------------------------------------------------

_LOYALTY = {
    "__init__.py": '"""A throwaway domain."""\n',
    "api.py": (
        '"""The door."""\n\nfrom app.loyalty import service\n\n\n'
        "def points_for(amount_minor: int) -> int:\n"
        "    return service.points_for(amount_minor)\n"
    ),
    "domain.py": "RATE = 100\n",
    "service.py": (
        "from app.loyalty import domain\n\n\n"
        "def points_for(amount_minor: int) -> int:\n"
        "    return amount_minor // domain.RATE\n"
    ),
    "routes.py": (
        "from typing import Any\n\n"
        "from app.platform.web import Endpoint, Result\n\n\n"
        "async def read_points(call: Any, session: Any) -> Result:\n"
        "    return Result(200, {'points': 0})\n\n\n"
        "def endpoints() -> list[Endpoint]:\n"
        "    return [Endpoint(method='GET', path='/v1/loyalty/points', handler=read_points,\n"
        "                     action='loyalty.points.read', resource_type='points',\n"
        "                     summary='Points', scopes=('loyalty:read',))]\n"
    ),
}

_PROBE = """
from app.domains import DOMAINS
from app.entrypoints.asgi import all_endpoints
from app.platform.migrate import api_version_locations
import app
print(app.__file__)
print(sorted(DOMAINS))
print(sorted(e.path for e in all_endpoints() if e.path.startswith("/v1/loyalty")))
print(sorted(p.parent.name for p in api_version_locations()))
"""


def test_a_new_domain_is_covered_everywhere_when_named_once_in_app_domains(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "repo"
    for name in ("app", "evidence", "pipeline", "architecture"):
        shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    package = copy / "app" / "loyalty"
    (package / "migrations").mkdir(parents=True)
    for filename, source in _LOYALTY.items():
        (package / filename).write_text(source)

    unnamed = _lint_imports(copy)
    assert unnamed.returncode != 0
    assert "app.loyalty is not named in app/domains.py" in unnamed.stdout

    # The one edit.
    registry = copy / "app" / "domains.py"
    registry.write_text(
        registry.read_text().replace('("risk", "ledger",', '("risk", "loyalty", "ledger",')
    )

    assert _lint_imports(copy).returncode == 0, _lint_imports(copy).stdout[-2000:]
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=copy,
        env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    origin, domains, paths, migrations = probe.stdout.strip().splitlines()
    assert origin.startswith(str(copy))
    assert "'loyalty'" in domains
    assert paths == "['/v1/loyalty/points']"
    assert "'loyalty'" in migrations

    # And its boundaries hold: private modules, layers, evidence and pipeline.
    (copy / "app" / "identity" / "leak.py").write_text("import app.loyalty.api\n")
    (copy / "app" / "ledger" / "leak.py").write_text("import app.loyalty.service\n")
    (copy / "evidence" / "leak.py").write_text("import app.loyalty.api\n")
    (copy / "pipeline" / "leak.py").write_text("import app.loyalty.api\n")
    leaking = _lint_imports(copy)
    assert leaking.returncode != 0
    for line in (
        "app.identity.leak -> app.loyalty.api",
        "app.ledger.leak -> app.loyalty.service",
        "evidence.leak -> app.loyalty.api",
        "pipeline.leak -> app.loyalty.api",
    ):
        assert line in leaking.stdout, line

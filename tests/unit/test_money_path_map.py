"""docs/money-path.md must draw every payments route and saga step the code has, and
nothing the code does not have."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from app.payments import api as payments_api
from app.payments.domain import STEP_NAMES

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "money-path.md"


def _diagram() -> str:
    text = DOC.read_text()
    blocks = re.findall(r"```mermaid\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 1, "the map is one Mermaid diagram"
    return blocks[0]


def _code_routes() -> set[str]:
    routes = {f"{ep.method} {ep.path}" for ep in payments_api.endpoints()}
    for route in payments_api.plain_routes():
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                routes.add(f"{method} {route.path}")  # type: ignore[attr-defined]
    return routes


def _steps_recorded_in_code() -> set[str]:
    """The literal step names passed to `store.add_step` anywhere in app/payments."""
    found: set[str] = set()
    for path in (ROOT / "app" / "payments").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_step"
                and len(node.args) >= 3
                and isinstance(node.args[2], ast.Constant)
            ):
                found.add(str(node.args[2].value))
    return found


def test_every_route_in_code_is_on_the_map_and_back_when_compared() -> None:
    drawn = set(re.findall(r"route: ((?:GET|POST|PUT|PATCH|DELETE) /\S+?)\"", _diagram()))
    assert drawn == _code_routes()


def test_every_saga_step_in_code_is_on_the_map_and_back_when_compared() -> None:
    drawn = set(re.findall(r"step: ([a-z_]+)", _diagram()))
    assert _steps_recorded_in_code() == set(STEP_NAMES)
    assert drawn == set(STEP_NAMES)


def test_the_map_names_each_gate_and_provider_when_read() -> None:
    diagram = _diagram()
    for word in ("KYC", "risk", "OPA", "Audit", "evidence", "acme", "globex", "OpenBao"):
        assert word in diagram

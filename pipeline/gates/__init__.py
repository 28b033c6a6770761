"""The gates, one module each, every one declared on the shared step (`gates.step`).

`GATES` is the run order. A gate's name is written once, in its module's `GATE`.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.gates import (
    bandit,
    build,
    checkov,
    licences,
    lint_imports,
    migrations,
    mypy,
    opa,
    pip_audit,
    pytest_suite,
    ruff,
    sbom,
    secret_scan,
)
from pipeline.gates.step import Attachment, Gate, GateResult, Tool, attach, locked_pins

GATES: Mapping[str, Gate] = {
    gate.name: gate
    for gate in (
        ruff.GATE,
        mypy.GATE,
        lint_imports.GATE,
        bandit.GATE,
        secret_scan.GATE,
        pip_audit.GATE,
        licences.GATE,
        checkov.GATE,
        opa.GATE,
        migrations.GATE,
        pytest_suite.GATE,
        sbom.GATE,
        build.GATE,
    )
}

__all__ = ["GATES", "Attachment", "Gate", "GateResult", "Tool", "attach", "locked_pins"]

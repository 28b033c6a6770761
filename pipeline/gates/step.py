"""The step every gate runs on: a gate observes, the step times, stores and labels.

A gate module declares one `Gate` (its name, the controls it gives evidence for, and an
`observe` function). `observe` runs the tool and reduces its report to facts; the step
around it owns the clock, the report folder, the attachments and the input digests, so a
gate's name is written once, in its declaration.

A gate never decides pass or fail: `pipeline.policy` hands the facts to the Rego policy in
`policies/pipeline/`. A gate whose tool could not run reports `tool_error`, which the policy
turns into a failure, so a broken tool can never look like a clean scan.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from pipeline.workspace import ToolRun, Workspace, sha256_file

MAX_FINDINGS_IN_FACTS = 500
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    version: str
    config_digest: str


@dataclass(frozen=True, slots=True)
class Attachment:
    """A report file, referenced from evidence by its digest."""

    name: str
    path: Path
    digest: str
    media_type: str
    size_bytes: int


@dataclass(slots=True)
class GateResult:
    """What a gate observed. `facts` is the policy input; `finding_counts` is for humans."""

    gate: str
    controls: tuple[str, ...]
    tool: Tool
    facts: dict[str, Any]
    finding_counts: dict[str, int]
    started_at: datetime
    finished_at: datetime
    duration_ms: int
    attachments: list[Attachment] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Observation:
    """What `observe` returns: the tool that ran, its facts and the counts for humans."""

    tool: Tool
    facts: dict[str, Any]
    counts: dict[str, int]


def attach(ws: Workspace, gate: str, path: Path, media_type: str) -> list[Attachment]:
    """Store a report content-addressed under reports/attachments and describe it."""
    if not path.is_file():
        return []
    digest = sha256_file(path)
    store = ws.reports_dir / "attachments" / digest.replace(":", "/")
    store.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, store)
    return [
        Attachment(
            name=f"{gate}/{path.name}",
            path=store,
            digest=digest,
            media_type=media_type,
            size_bytes=path.stat().st_size,
        )
    ]


@dataclass(slots=True)
class GateStep:
    """One gate's run: its workspace, its report folder, what it attaches and hashes."""

    ws: Workspace
    name: str
    attachments: list[Attachment] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    # What the gate produced (name -> sha256 digest): the build gate's artifacts.
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        """`reports/<gate>/`, created on first use."""
        folder = self.ws.reports_dir / self.name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def fresh(self, filename: str) -> Path:
        """A report path in the gate's folder with no stale file from an earlier run."""
        path = self.folder / filename
        path.unlink(missing_ok=True)
        return path

    def write(self, filename: str, content: str) -> Path:
        path = self.folder / filename
        path.write_text(content)
        return path

    def attach(self, path: Path, media_type: str) -> None:
        self.attachments += attach(self.ws, self.name, path, media_type)

    def sarif(self, path: Path) -> str | None:
        """Keep a SARIF report for code scanning (`reports/.../sarif/<gate>.sarif`), attach
        it, and return its SARIF version (None when the tool wrote none)."""
        document = load_json(path)
        if not isinstance(document, dict):
            return None
        shared = self.ws.reports_dir / "sarif" / f"{self.name}.sarif"
        shared.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, shared)
        self.attach(path, "application/sarif+json")
        version = document.get("version")
        return str(version) if version else None

    def volatile(self) -> dict[str, str]:
        """Run-specific paths, replaced by placeholders in config digests."""
        ws = self.ws
        return {str(ws.reports_dir): "<reports>", str(ws.bin_dir): "<bin>", str(ws.home): "<home>"}


@dataclass(frozen=True, slots=True)
class Gate:
    """A gate's declaration: its name, its controls and how it observes the tree."""

    name: str
    controls: tuple[str, ...]
    observe: Callable[[GateStep], Observation]

    def __call__(self, ws: Workspace) -> GateResult:
        step = GateStep(ws, self.name)
        started_at, start = now(), time.monotonic()
        seen = self.observe(step)
        return GateResult(
            gate=self.name,
            controls=self.controls,
            tool=seen.tool,
            facts=seen.facts,
            finding_counts=seen.counts,
            started_at=started_at,
            finished_at=now(),
            duration_ms=int((time.monotonic() - start) * 1000),
            attachments=step.attachments,
            inputs={
                "requirements.lock": sha256_file(ws.root / "requirements.lock"),
                "pyproject.toml": sha256_file(ws.root / "pyproject.toml"),
                **step.inputs,
            },
            outputs=step.outputs,
        )


def now() -> datetime:
    return datetime.now(UTC)


def dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unavailable"


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def tool_error(run: ToolRun) -> str:
    # Some tools (bandit -q) explain a usage error on stdout, others on stderr.
    said = (run.stderr.strip() or run.stdout.strip())[-800:]
    return f"{run.argv[0].rsplit('/', 1)[-1]} exited {run.exit_code}: {said}"


def locked_pins(lock_text: str) -> list[dict[str, str]]:
    """`name==version` pins of a requirements lock, names canonicalised."""
    return [{"name": canonicalize_name(m[1]), "version": m[2]} for m in _PIN.finditer(lock_text)]

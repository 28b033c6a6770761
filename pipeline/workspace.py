"""Where a pipeline run looks: the tree under test, its tools, reports and policy.

The tree under test (`root`) and the pipeline's own installation (`home`: tools, policy)
are kept apart, so the gates can be pointed at a temporary copy of the repository with a
planted problem while the tools and the deciding policy stay the trusted ones.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOME = Path(__file__).resolve().parents[1]
# Where `make install` unpacks the advisory snapshot the repository ships (inside `home`).
DEFAULT_ADVISORY_DB = Path(".tools") / "advisory-db" / "vulns"
ADVISORY_SOURCES = ("snapshot", "online")
SOURCE_PACKAGES = ("app", "evidence", "pipeline")
TEST_PATHS = ("tests/unit", "tests/integration", "tests/e2e")
OUTPUT_LIMIT_CHARS = 200_000
# Variables that would make a child pytest/coverage behave like part of an outer run.
_LEAKY_ENV_PREFIXES = ("COV_CORE_", "PYTEST_", "COVERAGE_")


@dataclass(frozen=True, slots=True)
class Workspace:
    """Paths and settings for one run. Build it with `Workspace.create()`."""

    root: Path
    reports_dir: Path
    home: Path
    bin_dir: Path
    opa: Path
    checkov: Path
    advisory_db: Path
    advisory_source: str
    policy_dir: Path
    source_packages: tuple[str, ...]
    test_paths: tuple[str, ...]
    pytest_reports: Path | None = None
    timeout_s: int = 1800
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        root: Path,
        *,
        reports_dir: Path | None = None,
        advisory_db: Path | None = None,
        advisory_source: str = "snapshot",
        pytest_reports: Path | None = None,
        source_packages: Sequence[str] | None = None,
        test_paths: Sequence[str] | None = None,
        policy_dir: Path | None = None,
        home: Path = HOME,
    ) -> Workspace:
        """Resolve defaults: tools, policy and the advisory snapshot all from `home`.

        Every default lies inside `home`, the pipeline's own checkout: nothing is read from
        beside it. `advisory_source` is `snapshot` (offline, from `advisory_db`) or `online`
        (pip-audit's own OSV service).
        """
        if advisory_source not in ADVISORY_SOURCES:
            raise ValueError(f"advisory_source must be one of {ADVISORY_SOURCES}")
        root = root.resolve()
        db = advisory_db or DEFAULT_ADVISORY_DB
        packages = tuple(source_packages or [p for p in SOURCE_PACKAGES if (root / p).is_dir()])
        return cls(
            root=root,
            reports_dir=(reports_dir or root / "reports" / "pipeline").resolve(),
            home=home,
            bin_dir=Path(sys.executable).parent,
            opa=home / ".tools" / "bin" / "opa",
            checkov=home / ".tools" / "checkov" / "bin" / "checkov",
            advisory_db=(db if db.is_absolute() else home / db).resolve(),
            advisory_source=advisory_source,
            policy_dir=policy_dir or home / "policies" / "pipeline",
            source_packages=packages,
            test_paths=tuple(test_paths or [p for p in TEST_PATHS if (root / p).is_dir()]),
            pytest_reports=pytest_reports.resolve() if pytest_reports else None,
        )

    def tool(self, name: str) -> str:
        """Absolute path of a console script installed next to this Python."""
        return str(self.bin_dir / name)


@dataclass(frozen=True, slots=True)
class ToolRun:
    """The outcome of one tool invocation."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    duration_ms: int


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for tool subprocesses, without an outer pytest/coverage's variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY_ENV_PREFIXES)}
    env.setdefault("XDG_RUNTIME_DIR", "/tmp")  # noqa: S108 - pgserver needs one; see Makefile.
    env.update(extra or {})
    return env


def run_tool(
    argv: Sequence[str],
    *,
    cwd: Path,
    timeout_s: int,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    limit_chars: int = OUTPUT_LIMIT_CHARS,
) -> ToolRun:
    """Run a fixed tool (never through a shell); a missing binary or timeout is exit 127/124."""
    started = time.monotonic()
    try:
        done = subprocess.run(  # noqa: S603 - argv is built by the pipeline, never a shell.
            list(argv),
            cwd=cwd,
            env=child_env(env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        code, out, err = done.returncode, done.stdout, done.stderr
    except FileNotFoundError as error:
        code, out, err = 127, "", f"tool not found: {error.filename}"
    except subprocess.TimeoutExpired:
        code, out, err = 124, "", f"timed out after {timeout_s} s"
    return ToolRun(
        argv=tuple(argv),
        exit_code=code,
        stdout=out[-limit_chars:],
        stderr=err[-limit_chars:],
        duration_ms=int((time.monotonic() - started) * 1000),
    )


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Digest of a file's bytes, or of the empty string's absence marker when missing."""
    if not path.is_file():
        return "sha256:missing"
    return sha256_bytes(path.read_bytes())


def tree_digest(root: Path, files: Iterable[Path]) -> str:
    """A digest over (relative path, content digest) pairs, stable across machines."""
    lines = sorted(f"{p.relative_to(root).as_posix()} {sha256_file(p)}" for p in files)
    return sha256_bytes("\n".join(lines).encode())


def config_digest(
    argv: Sequence[str],
    files: Iterable[Path],
    root: Path,
    volatile: Mapping[str, str] | None = None,
) -> str:
    """What configured a tool: its arguments and its config files' contents.

    Run-specific parts (the checkout path, the report directory, a temporary port or cache)
    are replaced by placeholders via `volatile`, so equal configuration gives equal digests.
    """
    replacements = {**(volatile or {}), str(root): "."}
    parts = []
    for arg in argv:
        for old, placeholder in replacements.items():
            arg = arg.replace(old, placeholder)
        parts.append(arg)
    parts += [f"{p.name}={sha256_file(p)}" for p in sorted(files)]
    return sha256_bytes("\0".join(parts).encode())

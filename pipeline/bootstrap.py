"""`python -m pipeline bootstrap` (run by `make install`): the pipeline's own tools.

- checkov in its own venv, `.tools/checkov`: it pins packaging<24, so it cannot share ours.
- The shipped advisory snapshot, checked and unpacked into `.tools/advisory-db`.

Both steps skip work that is already done, so `make install` stays cheap when re-run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.advisory_snapshot import (
    PROVENANCE_PATH,
    UNPACKED_PATH,
    SnapshotError,
    read_provenance,
    unpack,
)
from pipeline.workspace import run_tool

CHECKOV_VERSION = "3.3.30"


def install_checkov(home: Path) -> int:
    """Create `.tools/checkov` with the pinned checkov; 0 when it is there."""
    venv = home / ".tools" / "checkov"
    python = venv / "bin" / "python"
    if list(venv.glob(f"lib/python*/site-packages/checkov-{CHECKOV_VERSION}.dist-info")):
        print(f"checkov {CHECKOV_VERSION} already in {venv}")
        return 0
    if not python.exists():
        made = run_tool([sys.executable, "-m", "venv", str(venv)], cwd=home, timeout_s=300)
        if made.exit_code != 0:
            print(made.stderr, file=sys.stderr)
            return 1
    uv = home / ".tools" / "uv" / "bin" / "uv"
    if uv.exists():
        argv = [str(uv), "pip", "install", "--quiet", "--python", str(python)]
    else:
        # A venv made by uv has no pip; ensurepip adds it from the standard library.
        run_tool([str(python), "-m", "ensurepip", "--upgrade"], cwd=home, timeout_s=300)
        argv = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    installed = run_tool([*argv, f"checkov=={CHECKOV_VERSION}"], cwd=home, timeout_s=1800)
    print(installed.stdout + installed.stderr)
    return installed.exit_code


def install_advisory_snapshot(home: Path) -> int:
    """Check the shipped advisory archive and unpack it into `.tools/advisory-db`."""
    try:
        manifest = unpack(read_provenance(home / PROVENANCE_PATH), home / UNPACKED_PATH)
    except SnapshotError as error:
        print(f"advisory snapshot: {error}", file=sys.stderr)
        return 1
    print(
        f"advisory snapshot {manifest['snapshot_date']} "
        f"(upstream {manifest['commit'][:12]}) in {home / UNPACKED_PATH}"
    )
    return 0


def bootstrap(home: Path) -> int:
    """Install every tool the gates need under `home/.tools`; non-zero when one failed."""
    return install_advisory_snapshot(home) or install_checkov(home)

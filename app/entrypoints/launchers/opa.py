"""OPA serving `policies/`, watched for edits in development."""

from __future__ import annotations

import os
from pathlib import Path

from opa_client import OpaClient

from app.entrypoints.launchers.binaries import opa_binary
from app.entrypoints.launchers.processes import (
    ProcessGroup,
    StackError,
    port_open,
    running_as_root,
)


def check_policies(policies_dir: Path) -> None:
    """Refuse to start OPA on a policies directory that is not readable."""
    if not policies_dir.is_dir():
        raise StackError(
            f"policies directory {policies_dir} not found: run from the repository root"
        )
    mode = policies_dir.stat().st_mode
    # As root, access() always says yes; judge by the owner's bits instead, so a
    # `chmod 000` mistake is caught on a developer's root shell too.
    if running_as_root():
        readable = (mode & 0o500) == 0o500
    else:
        readable = os.access(policies_dir, os.R_OK | os.X_OK)
    if not readable:
        raise StackError(
            f"policies directory {policies_dir} is not readable: chmod a+rx {policies_dir}"
        )


# OPA is a Go program: its garbage collector runs each time the heap grows by GOGC percent
# since the last collection. Its live heap is a few MB (the policies and their data), and
# every decision allocates, so at Go's default of 100 it collects very often. At 400 it
# spent about a quarter less CPU per decision in our measurement (0.34 -> 0.26 ms, issue
# 16) for a heap a few MB larger. An operator's own GOGC wins.
OPA_GC_PERCENT = "400"


def opa_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment OPA runs with: ours, with GOGC defaulting to OPA_GC_PERCENT."""
    inherited = dict(os.environ if environ is None else environ)
    inherited.setdefault("GOGC", OPA_GC_PERCENT)
    return inherited


def start_opa(
    group: ProcessGroup, *, port: int, policies_dir: Path, watch: bool, timeout_s: float
) -> None:
    check_policies(policies_dir)
    binary = opa_binary()
    argv = [
        str(binary),
        "run",
        "--server",
        "--addr",
        f"127.0.0.1:{port}",
        "--set",
        "decision_logs.console=true",
        "--log-format",
        "json",
    ]
    if watch:
        argv.append("--watch")
    argv.append(str(policies_dir))
    if port_open(port):
        raise StackError(f"port {port} is taken: stop the other OPA server")
    group.spawn("opa", argv, env=opa_environment())
    # The design card's client asks /health; wait_ready adds the early exit when the
    # process dies and the log line that says why.
    probe = OpaClient(host="127.0.0.1", port=port, timeout=1, retries=0)
    try:
        group.wait_ready(
            "opa",
            lambda: bool(probe.check_health()),
            timeout_s=timeout_s,
            what="opa",
            fix=f"run `opa check {policies_dir}`",
        )
    finally:
        probe.close_connection()

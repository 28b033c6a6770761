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
    group.spawn("opa", argv)
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

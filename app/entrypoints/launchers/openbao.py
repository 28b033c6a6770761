"""OpenBao in dev mode: in memory, unsealed, with a fixed root token the dev stack hands out."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from app.entrypoints.launchers.binaries import bao_binary
from app.entrypoints.launchers.processes import ProcessGroup, StackError, port_open

DEV_ROOT_TOKEN = "moneypath-dev-root"  # noqa: S105 - the dev server's token, not a secret


def start_openbao(group: ProcessGroup, *, root: Path, port: int, timeout_s: float) -> None:
    if port_open(port):
        raise StackError(f"port {port} is taken: stop the other Vault or OpenBao")
    bao = bao_binary()
    group.spawn(
        "openbao",
        [
            str(bao),
            "server",
            "-dev",
            f"-dev-root-token-id={DEV_ROOT_TOKEN}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        env={"HOME": str(root), "PATH": os.environ.get("PATH", "")},
    )
    address = f"http://127.0.0.1:{port}"
    group.wait_ready(
        "openbao",
        lambda: httpx.get(f"{address}/v1/sys/health", timeout=1).status_code == 200,
        timeout_s=timeout_s,
        what="openbao",
    )

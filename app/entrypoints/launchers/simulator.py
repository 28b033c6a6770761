"""The provider simulator: the outside world, and the only stand-in the stack runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx

from app.entrypoints.launchers.openbao import DEV_ROOT_TOKEN
from app.entrypoints.launchers.processes import ProcessGroup, StackError, port_open


def start_simulator(
    group: ProcessGroup,
    *,
    port: int,
    vault_addr: str,
    webhook_url: str,
    state_file: Path,
    hold_s: float,
    timeout_s: float,
) -> None:
    """Run the simulator with the provider secrets the bootstrap put in Vault, sending its
    webhooks to `webhook_url`. Its state file keeps what the providers did across restarts."""
    from app.platform.settings import VaultLogin
    from app.platform.vault import Vault
    from app.providers import api as providers_api

    if port_open(port):
        raise StackError(f"port {port} is taken: stop the other simulator or set SIM_PORT")
    vault = Vault.login(vault_addr, VaultLogin(token=DEV_ROOT_TOKEN))
    secrets = providers_api.read_provider_secrets(vault)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIM_")}
    env.update(
        SIM_PORT=str(port),
        SIM_WEBHOOK_URL=webhook_url,
        SIM_STATE_FILE=str(state_file),
        SIM_HOLD_S=str(hold_s),
    )
    for name, secret in secrets.items():
        env[f"SIM_{name.upper()}_API_KEY"] = secret.api_key
        env[f"SIM_{name.upper()}_WEBHOOK_SECRET"] = secret.webhook_secret
    group.spawn("provider-sim", [sys.executable, "-m", "provider_sim"], env=env)
    address = f"http://127.0.0.1:{port}"
    group.wait_ready(
        "provider-sim",
        lambda: httpx.get(f"{address}/_sim/health", timeout=1).status_code == 200,
        timeout_s=timeout_s,
        what="provider simulator",
    )

"""Production refuses plain-http Vault and token issuer at start-up, with one clear line
(issue 10): each of our processes, started as the image starts it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.entrypoints.launchers.processes import REPO_ROOT, free_port

PRODUCTION = {
    "PATH": "/usr/bin:/bin",
    "MONEYPATH_ENV": "production",
    "VAULT_ROLE_ID": "role",
    "VAULT_SECRET_ID": "secret",
    "PUBLIC_BASE_URL": "https://api.example",
    "VAULT_ADDR": "http://127.0.0.1:8200",
}


def _uvicorn(factory: str) -> list[str]:
    port = str(free_port())
    return [sys.executable, "-m", "uvicorn", factory, "--factory", "--port", port]


@pytest.mark.parametrize(
    "argv",
    [
        _uvicorn("app.entrypoints.asgi:create_app"),
        _uvicorn("evidence.asgi:create_app"),
        [sys.executable, "-m", "app.entrypoints.cli", "worker", "--once"],
    ],
    ids=["api", "evidence", "worker"],
)
def test_process_refuses_to_start_naming_the_setting_when_production_vault_is_plain_http(
    argv: list[str],
) -> None:
    result = subprocess.run(
        argv,
        env=PRODUCTION,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "VAULT_ADDR='http://127.0.0.1:8200' must be an https URL in production" in (
        result.stderr
    )
    assert "ALLOW_PLAIN_HTTP_LOOPBACK=true" in result.stderr
    assert "Traceback" not in result.stderr

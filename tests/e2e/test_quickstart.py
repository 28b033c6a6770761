"""The README quickstart, run verbatim against a live stack, and `moneypath call` printing
problems readably."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from app.entrypoints.devstack import Stack

QUICKSTART_HEADING = "## Quickstart: a first signed transfer"


def quickstart_lines(readme: Path) -> list[str]:
    """The command lines of the first ```sh block under the quickstart heading."""
    text = readme.read_text()
    section = text[text.index(QUICKSTART_HEADING) :]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the quickstart has no ```sh block"
    return [line for line in match.group(1).splitlines() if line.strip()]


@pytest.fixture
def workdir(tmp_path: Path, repo_root: Path) -> Path:
    # The lines name `.venv/bin/moneypath` relative to the clone; a link keeps the files they
    # write (quickstart.json, quickstart.pem) out of the repository.
    (tmp_path / ".venv").symlink_to(repo_root / ".venv")
    return tmp_path


def _second_terminal(stack: Stack) -> dict[str, str]:
    """What a user's second terminal has: the stack's addresses (these tests' ports are free
    ports, a user's are the defaults) but no profile and no Vault token, so the lines must
    say themselves whatever else they need."""
    env = stack.app_env()
    for name in ("MONEYPATH_ENV", "VAULT_TOKEN"):
        env.pop(name, None)
    return env


def _run(script: str, cwd: Path, stack: Stack) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env=_second_terminal(stack),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_readme_quickstart_makes_a_signed_transfer_when_run_verbatim(
    live_stack: Stack, workdir: Path, repo_root: Path
) -> None:
    lines = quickstart_lines(repo_root / "README.md")
    assert len(lines) == 5
    # `make run` is the live_stack fixture: the same Stack code on free ports.
    assert lines[0].split("#")[0].strip() == "make run"

    result = _run("\n".join(lines[1:]), workdir, live_stack)

    assert result.returncode == 0, result.stderr
    assert result.stderr.count("HTTP 201 Created") == 3, result.stderr
    created_line, transfer_text = result.stdout.split("\n", 1)
    assert json.loads(created_line)["credentials_file"] == "quickstart.json"
    transfer = json.loads(transfer_text)
    assert transfer["status"] == "posted"
    assert sorted(p["amount_minor"] for p in transfer["postings"]) == [1500, 1500]
    for name in ("quickstart.json", "quickstart.pem"):
        assert stat.S_IMODE((workdir / name).stat().st_mode) == 0o600
    credentials = json.loads((workdir / "quickstart.json").read_text())
    assert set(credentials) == {"api_url", "client_id", "client_secret", "key_id", "key_path"}


def test_call_prints_the_problem_code_and_replays_when_a_key_is_reused(
    live_stack: Stack, workdir: Path
) -> None:
    env = {**live_stack.app_env(), "MONEYPATH_ENV": "dev"}
    moneypath = str(workdir / ".venv" / "bin" / "moneypath")
    create = ["clients", "create", "--name", "ops", "--scopes", "ledger:write", "ledger:read"]
    subprocess.run(
        [moneypath, *create, "--out", "ops.json"],
        cwd=workdir,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    env["MONEYPATH_CREDENTIALS"] = "ops.json"

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [moneypath, "call", *args],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    account = {"code": f"ops-{os.getpid()}", "currency": "USD", "normal_balance": "credit"}
    opened = call("POST", "/v1/ledger/accounts", "--json", json.dumps(account), "--field", "id")
    assert opened.returncode == 0, opened.stderr
    account_id = opened.stdout.strip()
    assert account_id.startswith("acc_")
    legs = [
        {"account_id": account_id, "direction": "debit", "amount_minor": 5, "currency": "USD"},
        {"account_id": account_id, "direction": "credit", "amount_minor": 5, "currency": "USD"},
    ]
    overdraft = json.dumps({"status": "posted", "postings": legs[:1] + legs[:1]})
    refused = call(
        "POST", "/v1/ledger/transactions", "--json", overdraft, "--idempotency-key", "k1"
    )
    again = call("POST", "/v1/ledger/transactions", "--json", overdraft, "--idempotency-key", "k1")
    unsigned_path = call("GET", "/v1/ledger/accounts/acc_missing")
    no_credentials = subprocess.run(
        [moneypath, "call", "GET", "/v1/ledger/verify", "--credentials", "absent.json"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert refused.returncode == 1
    assert "HTTP 422" in refused.stderr
    assert "code=unbalanced_transaction" in refused.stderr, refused.stderr
    assert "idempotency-key=k1" in refused.stderr
    assert again.returncode == 1
    assert "replayed=true" in again.stderr, again.stderr
    assert "code=not_found" in unsigned_path.stderr
    assert no_credentials.returncode == 2
    assert "absent.json" in no_credentials.stderr

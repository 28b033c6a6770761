"""Starts the real development services: PostgreSQL, OpenBao, OPA, the API and evidence.

`moneypath up` and the test fixtures share this code, so the tests run against exactly
the stack a developer runs. `Stack` is the orchestration: where each service listens, the
order they start in, and the environment our own processes get. Each service's launcher
lives in `app.entrypoints.launchers`; the children run in their own process groups and are
stopped on exit, so Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from app.entrypoints.launchers import apps, postgres
from app.entrypoints.launchers.opa import start_opa
from app.entrypoints.launchers.openbao import DEV_ROOT_TOKEN, start_openbao
from app.entrypoints.launchers.postgres import EVIDENCE_DATABASE_NAME
from app.entrypoints.launchers.processes import REPO_ROOT, ProcessGroup, StackError, free_port
from app.entrypoints.launchers.simulator import start_simulator


@dataclass(frozen=True, slots=True)
class Ports:
    postgres: int = 5433
    vault: int = 8200
    opa: int = 8181
    api: int = 8000
    evidence: int = 8081
    sim: int = 8090
    # The worker's own /metrics (app/entrypoints/worker_metrics.py).
    worker_metrics: int = 9101

    @classmethod
    def free(cls) -> Ports:
        return cls(*(free_port() for _ in range(7)))


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
    # Whether DATABASE_URL named a server we do not run; the embedded one can be restarted.
    external_database: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.external_database = self.database_url is not None
        self.root = self.root.resolve()
        self.log_dir = self.root / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.group = ProcessGroup(self.log_dir, log_to_console=self.log_to_console)
        self.user = self.group.user

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

    @property
    def worker_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.worker_metrics}/metrics"

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

    # ---- the children --------------------------------------------------------------
    @property
    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        return self.group.processes

    def log_path(self, name: str) -> Path:
        return self.group.log_path(name)

    def stop(self, name: str) -> None:
        self.group.stop(name)

    def kill(self, name: str) -> None:
        """SIGKILL a service's whole process group, as a crash would (drills use this)."""
        self.group.kill(name)

    def stop_all(self) -> None:
        self.group.stop_all()

    # ---- the backing services ------------------------------------------------------
    def start_postgres(self, timeout_s: float = 60) -> str:
        """Use DATABASE_URL if given (checked within 5 s), else run the embedded server.

        Calling it again after `kill("postgres")` restarts the embedded server on the same
        data directory and port (crash recovery replays the WAL)."""
        if self.external_database and self.database_url is not None:
            return postgres.use_external(self.database_url)
        self.database_url = postgres.start_embedded(
            self.group, root=self.root, port=self.ports.postgres, timeout_s=timeout_s
        )
        return self.database_url

    def started_database_url(self) -> str:
        """The application database's URL; refuses before PostgreSQL was started."""
        if self.database_url is None:
            raise StackError("PostgreSQL has not been started: start the stack first")
        return self.database_url

    def database_url_for(self, name: str) -> str:
        base, _, _ = self.started_database_url().rpartition("/")
        return f"{base}/{name}"

    def start_vault(self, timeout_s: float = 30) -> None:
        start_openbao(self.group, root=self.root, port=self.ports.vault, timeout_s=timeout_s)

    def start_opa(self, timeout_s: float = 30) -> None:
        start_opa(
            self.group,
            port=self.ports.opa,
            policies_dir=self.policies_dir,
            watch=self.watch_policies,
            timeout_s=timeout_s,
        )
        # A restarted OPA (the opa-down drill) forgot the registrations made through its
        # data API; the anchor writer's is made again here (none before the bootstrap).
        if "openbao" in self.processes:
            self.trust_anchor_writer()

    def trust_anchor_writer(self) -> None:
        """Trust the worker's anchor client for `ledger.checkpoint` and nothing else.

        Through OPA's data API, as CI registers its pipeline's client: production lists
        the client id under `ledger.checkpoint` in policies/trust/evidence_submitters.json.
        """
        from app.entrypoints import anchors
        from app.platform.settings import VaultLogin
        from app.platform.vault import Vault
        from evidence import trust

        vault = Vault.login(self.vault_addr, VaultLogin(token=DEV_ROOT_TOKEN))
        credentials = anchors.credentials_from_vault(vault)
        if credentials is not None:
            trust.register_submitter(self.opa_url, credentials.client_id, [anchors.CHECKPOINT_TYPE])

    def start_simulator(self, timeout_s: float = 30) -> None:
        """The provider simulator, sending its webhooks to the API's address; its state file
        under the data directory keeps what the providers did across restarts."""
        start_simulator(
            self.group,
            port=self.ports.sim,
            vault_addr=self.vault_addr,
            webhook_url=self.api_url,
            state_file=self.root / "provider-sim.jsonl",
            hold_s=self.sim_hold_s,
            timeout_s=timeout_s,
        )

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
        self.trust_anchor_writer()

    def start_api(self, timeout_s: float = 60) -> None:
        apps.start_api(
            self.group,
            port=self.ports.api,
            workers=self.api_workers,
            env=self.app_env(),
            timeout_s=timeout_s,
        )

    def start_evidence(self, timeout_s: float = 60) -> None:
        """Start the evidence service, if this checkout has it."""
        apps.start_evidence(
            self.group, port=self.ports.evidence, env=self.app_env(), timeout_s=timeout_s
        )

    def start_worker(self, timeout_s: float = 60) -> None:
        """The maintenance loop (hold expiry, partitions, idempotency-key cleanup, payments'
        background steps), serving its /metrics on `ports.worker_metrics`."""
        apps.start_worker(
            self.group,
            env=self.app_env(),
            metrics_port=self.ports.worker_metrics,
            timeout_s=timeout_s,
        )

    # ---- the whole stack -----------------------------------------------------------
    def start_services(self) -> None:
        """The backing services only: what integration tests need."""
        # PostgreSQL first: an unreachable DATABASE_URL then fails start-up before anything
        # else was started.
        self.start_postgres()
        self.start_vault()
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

"""Our own processes: the API and the evidence service under uvicorn, and the worker."""

from __future__ import annotations

import sys

import httpx

from app.entrypoints.launchers.processes import REPO_ROOT, ProcessGroup, StackError, port_open


def _uvicorn_argv(factory: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        factory,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
    ]


def start_api(
    group: ProcessGroup, *, port: int, workers: int, env: dict[str, str], timeout_s: float
) -> None:
    if port_open(port):
        raise StackError(f"port {port} is taken: stop the other API server")
    argv = [*_uvicorn_argv("app.entrypoints.asgi:create_app", port), "--workers", str(workers)]
    group.spawn("api", argv, env=env)
    address = f"http://127.0.0.1:{port}"
    group.wait_ready(
        "api",
        lambda: httpx.get(f"{address}/readyz", timeout=2).status_code == 200,
        timeout_s=timeout_s,
        what="api",
    )


def start_evidence(
    group: ProcessGroup, *, port: int, env: dict[str, str], timeout_s: float
) -> None:
    """Start the evidence service, if this checkout has it."""
    if not (REPO_ROOT / "evidence" / "asgi.py").exists():
        return
    if port_open(port):
        raise StackError(f"port {port} is taken: stop the other evidence server")
    group.spawn("evidence", _uvicorn_argv("evidence.asgi:create_app", port), env=env)
    address = f"http://127.0.0.1:{port}"
    group.wait_ready(
        "evidence",
        lambda: httpx.get(f"{address}/readyz", timeout=2).status_code == 200,
        timeout_s=timeout_s,
        what="evidence",
    )


def start_worker(
    group: ProcessGroup, *, env: dict[str, str], metrics_port: int, timeout_s: float
) -> None:
    """The maintenance loop; ready once it serves its /metrics on `metrics_port`."""
    if port_open(metrics_port):
        raise StackError(
            f"port {metrics_port} is taken: stop the other worker or set WORKER_METRICS_PORT"
        )
    env = {**env, "WORKER_METRICS_HOST": "127.0.0.1", "WORKER_METRICS_PORT": str(metrics_port)}
    group.spawn("worker", [sys.executable, "-m", "app.entrypoints.cli", "worker"], env=env)
    address = f"http://127.0.0.1:{metrics_port}"
    group.wait_ready(
        "worker",
        lambda: httpx.get(f"{address}/healthz", timeout=2).status_code == 200,
        timeout_s=timeout_s,
        what="worker",
    )

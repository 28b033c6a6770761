"""The worker's own `/metrics`, so Prometheus sees what only the worker process counts.

prometheus-client keeps a counter in the process that increments it. The worker makes
the saga's later provider calls, delivers merchant webhooks (and dead-letters them) and
runs the scheduled reconciliation; the API's `/metrics` is another process and never
sees those. So each `moneypath worker` loop serves its own registry on
WORKER_METRICS_HOST:WORKER_METRICS_PORT (loopback by default), in its own event loop,
and is one more Prometheus target.

The backlogs (outbox depth and oldest age, dead letters waiting) are read from the
database when scraped, with a time limit, exactly as the API does: they are the same
figure from every target, so rules take `max()` of them, while counters are `sum()`med
over targets.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import structlog
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.entrypoints import backlogs
from app.platform.service_app import metrics_handler
from app.platform.settings import Settings

log = structlog.get_logger("moneypath.worker")

STOP_TIMEOUT_S = 5.0


def metrics_app(sessions: async_sessionmaker[AsyncSession]) -> Starlette:
    metrics = metrics_handler(lambda: backlogs.sample(sessions))

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the worker's loop owns SIGTERM and SIGINT and
    stops this server itself when it stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=64)
    except OSError as error:
        # A clear one-line cause beats a worker that runs unwatched.
        raise SystemExit(
            f"moneypath worker: cannot serve metrics on {host}:{port} ({error.strerror}); "
            "set WORKER_METRICS_PORT to a free port, or 0 to serve none"
        ) from None


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[str | None]:
    """Serve `/metrics` while the block runs; yields its URL (None when the port is 0)."""
    if settings.worker_metrics_port == 0:
        yield None
        return
    listener = _listen(settings.worker_metrics_host, settings.worker_metrics_port)
    config = uvicorn.Config(
        metrics_app(sessions),
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=int(STOP_TIMEOUT_S),
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    host, port = listener.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"
    log.info("worker_metrics_serving", url=url)
    try:
        yield url
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, STOP_TIMEOUT_S + 1)
        listener.close()

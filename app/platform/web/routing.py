"""Starlette routes for declared endpoints: one route per path, so a wrong method is a 405."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.platform.metrics import child
from app.platform.web.declarations import Endpoint
from app.platform.web.pipeline import run_pipeline

REQUESTS = Counter(
    "moneypath_http_requests_total",
    "HTTP requests by route, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "moneypath_http_request_duration_seconds",
    "Request latency by route.",
    ["route", "method"],
)


def endpoint_route(endpoint: Endpoint) -> Route:
    async def asgi_endpoint(request: Request) -> Response:
        started = time.perf_counter()
        response = await run_pipeline(endpoint, request)
        # Remembered children (metrics.child): labels() costs a lock per call.
        child(LATENCY, route=endpoint.path, method=endpoint.method).observe(
            time.perf_counter() - started
        )
        child(
            REQUESTS, route=endpoint.path, method=endpoint.method, status=str(response.status_code)
        ).inc()
        return response

    return Route(endpoint.path, asgi_endpoint, methods=[endpoint.method], name=endpoint.action)


def endpoint_routes(endpoints: Sequence[Endpoint]) -> list[Route]:
    """Group endpoints by path, so an unknown method on a known path is a 405."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for endpoint in endpoints:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint
    routes: list[Route] = []
    for path, methods in by_path.items():
        handlers = {method: endpoint_route(ep) for method, ep in methods.items()}

        def make(table: dict[str, Route]) -> Callable[[Request], Awaitable[Response]]:
            async def dispatch(request: Request) -> Response:
                route = table[request.method if request.method != "HEAD" else "GET"]
                response: Response = await route.endpoint(request)
                return response

            return dispatch

        routes.append(Route(path, make(handlers), methods=list(methods)))
    return routes

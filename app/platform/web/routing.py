"""Starlette routes for declared endpoints: one route per path, so a wrong method is a 405."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

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


def route_exact_paths_first(router: Router) -> None:
    """Answer a request for a path without parameters from a table, not Starlette's scan.

    Starlette tries each route in order, a regular expression each; the ledger's create
    came about 25th, some 25 µs of CPU per request (issue 16). The table holds each
    (path, method) of a route without path parameters for which that route is the one
    the scan would pick: the first route, in order, that fully matches it. Anything else
    (a path with an id, a wrong method, an unknown path, a lifespan event, a request
    under a root path) goes to Starlette's scan as before. Routes appended later cannot
    change what the scan picks for a path in the table (an earlier full match wins); a
    router holding anything but plain `Route`s, or wrapped in its own middleware, is
    left alone.
    """
    routes = [route for route in router.routes if type(route) is Route]
    if len(routes) != len(router.routes):
        return
    if getattr(router.middleware_stack, "__func__", None) is not Router.app:
        return
    table: dict[tuple[str, str], Route] = {}
    for route in routes:
        if route.param_convertors or not route.methods:
            continue
        for method in route.methods:
            probe: Scope = {"type": "http", "path": route.path, "method": method, "headers": []}
            first = next((r for r in routes if r.matches(probe)[0] is Match.FULL), None)
            if first is route:
                table.setdefault((route.path, method), route)
    router.middleware_stack = _ExactPaths(router, table)


class _ExactPaths:
    def __init__(self, router: Router, table: dict[tuple[str, str], Route]) -> None:
        self._router = router
        self._scan: ASGIApp = router.app
        self._table = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Under a root path, Starlette strips it first: the scan handles that case.
        route = (
            self._table.get((scope["path"], scope["method"]))
            if scope["type"] == "http" and not scope.get("root_path")
            else None
        )
        if route is None:
            await self._scan(scope, receive, send)
            return
        # What Router.app sets on a full match (Route.matches' child scope, no parameters).
        if "router" not in scope:
            scope["router"] = self._router
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = dict(scope.get("path_params", {}))
        await route.handle(scope, receive, send)

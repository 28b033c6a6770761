"""The router's table of exact paths (`route_exact_paths_first`) answers every request
exactly as Starlette's scan of the routes does, including where an earlier route with a
parameter shadows a later exact path, a wrong method (405) and an unknown path (404)."""

from __future__ import annotations

import itertools

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, Router
from starlette.testclient import TestClient

from app.entrypoints.asgi import all_endpoints
from app.platform.web import endpoint_routes, route_exact_paths_first

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE")


def _named(name: str) -> Route:
    async def answer(request: Request) -> Response:
        return PlainTextResponse(f"{name} {request.path_params} {request.scope['route'].path}")

    return Route(name.split()[0], answer, methods=name.split()[1:])


def _routes() -> list[Route]:
    return [
        _named("/healthz GET"),
        _named("/things/{id} GET"),
        # Shadowed: the scan takes `/things/{id}` for GET, but this one for POST.
        _named("/things/batch GET POST"),
        _named("/things POST"),
        _named("/things GET"),  # a later route for the same path: the scan's second pick
        _named("/other/{name:path} DELETE"),
        _named("/other/x PUT DELETE"),
    ]


PATHS = ["/healthz", "/things", "/things/batch", "/things/t_1", "/other/x", "/nowhere", "/things/"]


@pytest.mark.parametrize(("method", "path"), list(itertools.product(METHODS, PATHS)))
def test_request_is_routed_as_starlette_scans_when_paths_are_looked_up_first(
    method: str, path: str
) -> None:
    scanned, indexed = Router(_routes()), Router(_routes())
    route_exact_paths_first(indexed)
    with TestClient(scanned) as plain, TestClient(indexed) as fast:
        want = plain.request(method, path, follow_redirects=False)
        got = fast.request(method, path, follow_redirects=False)
    assert (got.status_code, got.text, got.headers.get("allow"), got.headers.get("location")) == (
        want.status_code,
        want.text,
        want.headers.get("allow"),
        want.headers.get("location"),
    )


def test_table_holds_only_the_scans_first_full_match_when_an_earlier_route_shadows() -> None:
    router = Router(_routes())
    route_exact_paths_first(router)
    table = router.middleware_stack._table  # type: ignore[attr-defined]
    assert ("/things/batch", "GET") not in table  # `/things/{id}` is first for GET
    assert table[("/things/batch", "POST")].path == "/things/batch"
    assert table[("/things", "GET")] is router.routes[4]  # the route that takes GET
    assert ("/other/x", "DELETE") not in table
    assert table[("/other/x", "PUT")].path == "/other/x"


def test_api_create_transaction_is_in_the_table_when_the_api_routes_are_built() -> None:
    router = Router(endpoint_routes(all_endpoints()))
    route_exact_paths_first(router)
    table = router.middleware_stack._table  # type: ignore[attr-defined]
    assert ("/v1/ledger/transactions", "POST") in table
    assert ("/v1/ledger/transactions/batch", "POST") in table

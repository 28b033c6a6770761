"""The HTTP layer every service shares, one room per job.

- `declarations`: what a domain declares (`Endpoint`) and what a handler gets (`Call`).
- `pipeline`: the named stages a `/v1` request passes, in API.md's order of checks.
- `execution`: idempotency orchestration around the handler's transaction.
- `auditing`: the audit records of refusals and outcomes.
- `routing`: routes per path (405 for a wrong method) and request metrics.
- `bodies`, `pagination`, `responses`, `middleware`, `handlers`: the small parts.

Domains import from here (`app.platform.web`), never from the rooms, so the rooms can
move without touching a domain.
"""

from app.platform.web.auditing import REJECTIONS, client_ip
from app.platform.web.bodies import PayloadTooLargeError, read_body
from app.platform.web.declarations import (
    MUTATING_METHODS,
    Admission,
    Authenticator,
    Authorizer,
    Call,
    Endpoint,
    Handler,
    OwnerLookup,
    Principal,
    Result,
    Services,
    SignatureVerifier,
)
from app.platform.web.handlers import (
    domain_error_handler,
    http_exception_handler,
    unhandled_error_handler,
)
from app.platform.web.middleware import RequestIdMiddleware, request_id_of
from app.platform.web.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    PAGE_PARAMETERS,
    decode_cursor,
    decode_time_cursor,
    encode_cursor,
    encode_time_cursor,
    page_limit,
    page_schema,
)
from app.platform.web.responses import json_response, problem_response
from app.platform.web.routing import endpoint_route, endpoint_routes, route_exact_paths_first

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "MUTATING_METHODS",
    "PAGE_PARAMETERS",
    "REJECTIONS",
    "Admission",
    "Authenticator",
    "Authorizer",
    "Call",
    "Endpoint",
    "Handler",
    "OwnerLookup",
    "PayloadTooLargeError",
    "Principal",
    "RequestIdMiddleware",
    "Result",
    "Services",
    "SignatureVerifier",
    "client_ip",
    "decode_cursor",
    "decode_time_cursor",
    "domain_error_handler",
    "encode_cursor",
    "encode_time_cursor",
    "endpoint_route",
    "endpoint_routes",
    "http_exception_handler",
    "json_response",
    "page_limit",
    "page_schema",
    "problem_response",
    "read_body",
    "request_id_of",
    "route_exact_paths_first",
    "unhandled_error_handler",
]

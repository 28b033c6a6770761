"""Exception handlers: every error leaves the service as an RFC 9457 problem document."""

from __future__ import annotations

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.platform.errors import PROBLEM_CONTENT_TYPE, DomainError, NotFoundError, problem_body
from app.platform.web.middleware import request_id_of
from app.platform.web.responses import problem_response

log = structlog.get_logger("moneypath.http")


class MethodNotAllowedError(DomainError):
    status = 405
    title = "Method not allowed"


class BadRequestError(DomainError):
    status = 400
    title = "Bad request"


# Starlette's own refusals (routing, 404 for an unknown path) use the same codes.
_HTTP_CODES = {
    error.status: error.code for error in (NotFoundError, MethodNotAllowedError, BadRequestError)
}


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):
        return await unhandled_error_handler(request, exc)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    body = problem_body(
        exc.status_code, code, str(exc.detail), str(exc.detail), instance=request.url.path
    )
    return JSONResponse(
        body,
        status_code=exc.status_code,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=dict(exc.headers or {}),
    )


async def domain_error_handler(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, DomainError):
        return await unhandled_error_handler(request, exc)
    return problem_response(exc, request)


async def unhandled_error_handler(request: Request, exc: Exception) -> Response:
    # Log the type only: a message may carry SQL or secrets, and neither belongs in a log.
    log.error("unhandled_error", error_type=type(exc).__name__)
    body = problem_body(
        500,
        "internal_error",
        "Internal error",
        "the request failed; quote the request id when reporting it",
        instance=request.url.path,
        extra={"request_id": request_id_of(request)},
    )
    return JSONResponse(body, status_code=500, media_type=PROBLEM_CONTENT_TYPE)

"""How the pipeline answers: JSON, RFC 9457 problems, and idempotent replays."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.platform.errors import PROBLEM_CONTENT_TYPE, DomainError, problem_body

REPLAYED_HEADER = "Idempotent-Replayed"


def problem_response(error: DomainError, request: Request | None = None) -> Response:
    body = problem_body(
        error.status,
        error.code,
        error.title,
        error.detail,
        instance=request.url.path if request is not None else None,
        extra=error.extra,
    )
    return JSONResponse(
        body, status_code=error.status, media_type=PROBLEM_CONTENT_TYPE, headers=error.headers
    )


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def render_json(body: Any) -> bytes | None:
    """The bytes `json_response` sends for `body` (as JSONResponse renders it), or None
    when JSONResponse cannot render it (it raises there, as before)."""
    try:
        return json.dumps(
            body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
        ).encode("utf-8")
    except (TypeError, ValueError):  # UnicodeEncodeError (a lone surrogate) included
        return None


def rendered_json_response(
    status: int, rendered: bytes, headers: Mapping[str, str] | None = None
) -> Response:
    """`json_response` of a body already rendered by `render_json`: the same bytes and
    headers, without rendering it again."""
    return Response(
        rendered,
        status_code=status,
        headers=dict(headers or {}),
        media_type=JSONResponse.media_type,
    )


def replayed_response(status: int, body: Any) -> Response:
    """A stored answer sent again: a problem document stays one."""
    headers = {REPLAYED_HEADER: "true"}
    if status >= 400:
        return JSONResponse(
            body, status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers
        )
    return json_response(status, body, headers)

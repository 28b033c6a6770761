"""Reading a request body within its limit, and refusing what is not JSON."""

from __future__ import annotations

from starlette.requests import Request

from app.platform.errors import ValidationError
from app.platform.jsonbody import UnsupportedMediaTypeError


class PayloadTooLargeError(ValidationError):
    status = 413
    title = "Payload too large"


async def read_body(request: Request, limit_bytes: int) -> bytes:
    """Read the body, refusing more than `limit_bytes` without buffering the excess."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ValidationError("Content-Length is not a number")
        if int(declared) > limit_bytes:
            raise PayloadTooLargeError(f"body larger than {limit_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise PayloadTooLargeError(f"body larger than {limit_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def check_content_type(request: Request, body: bytes) -> None:
    if not body:
        return
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaTypeError("send the body as application/json")

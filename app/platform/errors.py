"""Error types shared by every domain, and their RFC 9457 problem+json rendering.

Domains raise `DomainError` subclasses for expected business outcomes. Only the ASGI layer
turns them into HTTP responses, so a domain never knows about status codes beyond the
number it declares.
"""

from __future__ import annotations

from typing import Any, ClassVar

from prometheus_client import Counter

PROBLEM_CONTENT_TYPE = "application/problem+json"

INVARIANT_VIOLATIONS = Counter(
    "moneypath_invariant_violations_total",
    "Broken internal invariants; each one failed a request.",
    ["invariant"],
)


class DomainError(Exception):
    """An expected business outcome that the client must hear about.

    Subclasses set `status` and `code`. `code` is part of the public contract (API.md) and
    never changes once published.
    """

    status: ClassVar[int] = 422
    code: ClassVar[str] = "domain_error"
    title: ClassVar[str] = "Request refused"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = {}


class ValidationError(DomainError):
    status = 422
    code = "validation_error"
    title = "Invalid request"


class NotFoundError(DomainError):
    status = 404
    code = "not_found"
    title = "Not found"


class ConflictError(DomainError):
    status = 409
    code = "conflict"
    title = "Conflict"


class UnauthorizedError(DomainError):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"


class ForbiddenError(DomainError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class DependencyUnavailableError(DomainError):
    """A component we depend on (OPA, Vault, the database) could not answer in time."""

    status = 503
    code = "dependency_unavailable"
    title = "Service unavailable"


class InvariantViolation(Exception):
    """A rule that must always hold was broken. Fails the request and is counted."""

    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        INVARIANT_VIOLATIONS.labels(invariant=invariant).inc()


def problem_body(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build an RFC 9457 problem document with our stable `code` extension member."""
    body: dict[str, Any] = {
        "type": f"https://moneypath.dev/problems/{code.replace('_', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance is not None:
        body["instance"] = instance
    if extra:
        for key, value in extra.items():
            body.setdefault(key, value)
    return body

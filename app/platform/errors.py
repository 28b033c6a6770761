"""Error types shared by every domain, and their RFC 9457 problem+json rendering.

Domains raise `DomainError` subclasses for expected business outcomes. Only the ASGI layer
turns them into HTTP responses, so a domain never knows about status codes beyond the
number it declares.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from prometheus_client import Counter

PROBLEM_CONTENT_TYPE = "application/problem+json"
_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

INVARIANT_VIOLATIONS = Counter(
    "moneypath_invariant_violations_total",
    "Broken internal invariants; each one failed a request.",
    ["invariant"],
)


def code_of(class_name: str) -> str:
    """`InsufficientFundsError` -> `insufficient_funds`: the public code a class implies."""
    words = _WORD_START.sub("_", class_name.removesuffix("Error"))
    return words.lower()


class DomainError(Exception):
    """An expected business outcome that the client must hear about.

    The class is the declaration: endpoints list the classes they may raise, and the OpenAPI
    document and every problem document take `status`, `code` and `title` from it. `code`
    is the class name in snake case without `Error` (`InsufficientFundsError` ->
    `insufficient_funds`); a class sets `code` itself only where the published code differs
    from its name (a unit test refuses one that repeats it). Subclasses of a `shares_code`
    class (every missing thing is `not_found`) keep that class's code. `code` is part of the
    public contract (API.md) and never changes once published.
    """

    status: ClassVar[int] = 422
    code: ClassVar[str] = "domain_error"
    title: ClassVar[str] = "Request refused"
    shares_code: ClassVar[bool] = False
    writes_code: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Whether the class wrote its code out; tests/unit/test_declared_errors.py refuses
        # a written code that merely repeats the class name.
        cls.writes_code = "code" in cls.__dict__
        if cls.writes_code:
            return
        if not any(base.__dict__.get("shares_code", False) for base in cls.__mro__[1:]):
            cls.code = code_of(cls.__name__)

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
    title = "Not found"
    # Any missing thing answers `not_found`, and so does a thing that is someone else's.
    shares_code = True


class ConflictError(DomainError):
    status = 409
    title = "Conflict"


class UnauthorizedError(DomainError):
    status = 401
    title = "Unauthorized"


class ForbiddenError(DomainError):
    status = 403
    title = "Forbidden"


class DependencyUnavailableError(DomainError):
    """A component we depend on (OPA, Vault, the database) could not answer in time."""

    status = 503
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

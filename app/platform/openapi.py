"""Builds the served OpenAPI 3.1 document from the declared endpoints.

The request schemas that validate bodies are the same objects that appear here, so the
contract a fuzzer reads is the contract the server enforces.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from app.platform import idempotency
from app.platform.errors import DomainError, ForbiddenError, UnauthorizedError, ValidationError
from app.platform.jsonbody import MalformedJsonError, UnsupportedMediaTypeError
from app.platform.opa import OpaUnavailableError
from app.platform.request_auth import (
    DigestMismatchError,
    InvalidSignatureError,
    KeyNotBoundError,
    ReplayedRequestError,
    SignatureRequiredError,
    StaleRequestError,
)
from app.platform.web import Endpoint, PayloadTooLargeError

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "instance": {"type": "string"},
    },
}

_PATH_PARAMETER = re.compile(r"{([a-z_]+)(?::[a-z]+)?}")

_STANDARD_ERRORS = {
    "400": "Missing Idempotency-Key or malformed request",
    "401": "Missing or invalid token or signature",
    "403": "Denied by policy",
    "404": "Not found",
    "409": "Conflict with the current state",
    "413": "Body too large",
    "415": "Body is not application/json",
    "422": "Validation or business rule failure",
    "503": "A dependency (OPA, Vault, database) is unavailable",
}


def pipeline_errors(endpoint: Endpoint) -> tuple[type[DomainError], ...]:
    """The refusals the shared pipeline itself may answer for this endpoint."""
    errors: list[type[DomainError]] = []
    if endpoint.authenticated:
        errors += [UnauthorizedError, ForbiddenError, OpaUnavailableError]
    if endpoint.needs_signature:
        errors += [
            SignatureRequiredError,
            InvalidSignatureError,
            StaleRequestError,
            DigestMismatchError,
            ReplayedRequestError,
            KeyNotBoundError,
        ]
    if endpoint.idempotent:
        errors += [
            idempotency.IdempotencyKeyRequiredError,
            idempotency.IdempotencyKeyReusedError,
            idempotency.IdempotencyKeyInUseError,
        ]
    errors += [PayloadTooLargeError, ValidationError]
    if endpoint.request_schema is not None:
        errors += [UnsupportedMediaTypeError, MalformedJsonError]
    return tuple(errors)


def declared_errors(endpoint: Endpoint) -> tuple[type[DomainError], ...]:
    """The endpoint's own refusals first, then the pipeline's, each code once."""
    by_code: dict[str, type[DomainError]] = {}
    for error in (*endpoint.errors, *pipeline_errors(endpoint)):
        by_code.setdefault(error.code, error)
    return tuple(by_code.values())


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "maxLength": 128},
        }
        for name in _PATH_PARAMETER.findall(endpoint.path)
    ]
    parameters.extend(endpoint.query_parameters)
    if endpoint.idempotent:
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": True,
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": idempotency.MAX_KEY_LENGTH,
                    "pattern": idempotency.KEY_PATTERN,
                },
            }
        )
    if endpoint.needs_signature:
        for header in ("Signature-Input", "Signature"):
            parameters.append(
                {"name": header, "in": "header", "required": True, "schema": {"type": "string"}}
            )
        parameters.append(
            {
                "name": "Content-Digest",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
            }
        )
    success: dict[str, Any] = {"description": "OK"}
    if endpoint.response_schema is not None:
        success["content"] = {"application/json": {"schema": endpoint.response_schema}}
    responses: dict[str, Any] = {str(endpoint.success_status): success}
    errors = declared_errors(endpoint)
    codes_by_status: dict[str, list[str]] = {}
    for error in errors:
        codes_by_status.setdefault(str(error.status), []).append(error.code)
    statuses = {
        status
        for status in _STANDARD_ERRORS
        if not (status == "400" and not endpoint.idempotent)
        and not (status in {"401", "403"} and not endpoint.authenticated)
    } | set(codes_by_status)
    for status in sorted(statuses):
        description = _STANDARD_ERRORS.get(status, "Refused")
        codes = codes_by_status.get(status)
        if codes:
            description += " (code: " + ", ".join(f"`{code}`" for code in codes) + ")"
        responses[status] = _problem(description)
    operation: dict[str, Any] = {
        "operationId": endpoint.action.replace(".", "_"),
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "parameters": parameters,
        "responses": responses,
        "x-scopes": list(endpoint.scopes),
        "x-error-codes": [error.code for error in errors],
    }
    if endpoint.authenticated:
        operation["security"] = [{"bearerAuth": list(endpoint.scopes)}]
    else:
        operation["security"] = []
    if endpoint.request_schema is not None:
        operation["requestBody"] = {
            "required": endpoint.method != "POST" or bool(endpoint.request_schema.get("required")),
            "content": {"application/json": {"schema": endpoint.request_schema}},
        }
    return operation


def build_document(
    title: str,
    version: str,
    endpoints: Sequence[Endpoint],
    extra_paths: dict[str, Any] | None = None,
) -> dict[str, Any]:
    paths: dict[str, Any] = dict(extra_paths or {})
    for endpoint in endpoints:
        openapi_path = _PATH_PARAMETER.sub(r"{\1}", endpoint.path)
        paths.setdefault(openapi_path, {})[endpoint.method.lower()] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": {"Problem": PROBLEM_SCHEMA},
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }

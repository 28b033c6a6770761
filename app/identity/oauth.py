"""Identity's OAuth2 surface: the token endpoint (client credentials) and the JWKS.

The token endpoint is form-encoded (RFC 6749) and answers RFC 6749 §5.2 errors, so it
does not go through the JSON `Endpoint` pipeline; its OpenAPI entry is written by hand in
`openapi_paths()`. The `/v1/clients` JSON endpoints live in `routes.py`.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.identity import domain, service
from app.identity.tokens import TokenIssuer
from app.platform import audit, auth_limits
from app.platform.errors import DomainError
from app.platform.web import (
    REJECTIONS,
    Services,
    client_ip,
    read_body,
    request_id_of,
)

log = structlog.get_logger("moneypath.identity")

TOKEN_PATH = "/v1/oauth/token"  # noqa: S105 - a path
JWKS_PATH = "/.well-known/jwks.json"
TOKEN_BODY_LIMIT_BYTES = 8192
MAX_FORM_FIELDS = 10
# How much of a malformed client_id the audit record quotes (escaped by audit.safe_text).
MAX_CLAIMED_ID_LENGTH = 64
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: `invalid_client` is 401, the others 400."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description

    @property
    def status(self) -> int:
        return 401 if self.error == "invalid_client" else 400


def _form(raw: bytes, content_type: str) -> dict[str, str]:
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send the form as application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(
            raw.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=bool(raw),
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the form is malformed") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise OAuthError("invalid_request", f"parameter {name} is repeated")
        form[name] = value
    return form


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
    """RFC 6749 §2.3.1: HTTP Basic or the form body, never both at once."""
    header = request.headers.get("authorization")
    if header is None:
        return form.get("client_id"), form.get("client_secret")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError("invalid_client", "client authentication must use Basic or the form")
    if "client_secret" in form:
        raise OAuthError("invalid_request", "send the client credentials one way only")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise OAuthError("invalid_client", "malformed Basic credentials") from None
    user, separator, password = decoded.partition(":")
    if not separator:
        raise OAuthError("invalid_client", "malformed Basic credentials")
    client_id = unquote_plus(user)
    if form.get("client_id") not in (None, client_id):
        raise OAuthError("invalid_request", "client_id in the form and in Basic differ")
    form["client_id"] = client_id
    return client_id, unquote_plus(password)


async def _issue(
    request: Request, services: Services, issuer: TokenIssuer, form: dict[str, str]
) -> dict[str, Any]:
    grant_type = form.get("grant_type")
    if not grant_type:
        raise OAuthError("invalid_request", "grant_type is required")
    if grant_type != "client_credentials":
        raise OAuthError("unsupported_grant_type", "only client_credentials is supported")
    client_id, client_secret = _client_credentials(request, form)
    if not client_id or not client_secret or len(client_secret) > 256:
        raise OAuthError("invalid_client", "client_id and client_secret are required")
    if not domain.is_client_id(client_id):
        raise OAuthError("invalid_client", "client authentication failed")
    limiter = services.failure_limiter
    if limiter is not None:
        # Before scrypt: a client id or address that used up its failures costs nothing.
        await limiter.check(auth_limits.subjects(client_id, client_ip(request)))
    requested_key = form.get("key_id") or None
    if requested_key is not None and not domain.is_key_id(requested_key):
        raise OAuthError("invalid_request", "the client has no such active key")
    await issuer.refresh_if_due()
    async with services.sessions() as session:
        client = await service.authenticate_client(session, client_id, client_secret)
    if client is None:
        raise OAuthError("invalid_client", "client authentication failed")
    scopes = domain.requested_scopes(form.get("scope"), client.scopes)
    if scopes is None:
        raise OAuthError("invalid_scope", "the requested scope exceeds the client's scopes")
    key = service.pick_key(client, requested_key, datetime.now(UTC))
    if key is None:
        raise OAuthError("invalid_request", "the client has no such active key")
    token = issuer.issue(
        client_id=client.id, scopes=scopes, key_id=key.key_id, public_jwk=key.public_jwk
    )
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": issuer.lifetime_s,
        "scope": " ".join(scopes),
    }


async def token_endpoint(request: Request, issuer: TokenIssuer) -> Response:
    services: Services = request.app.state.services
    form: dict[str, str] = {}
    try:
        raw = await read_body(request, TOKEN_BODY_LIMIT_BYTES)
        form = _form(raw, request.headers.get("content-type", ""))
        body = await _issue(request, services, issuer, form)
    except auth_limits.RateLimitedError as error:
        return _rate_limited(error)
    except DomainError as error:
        if error.status >= 500:
            raise
        failure = OAuthError("invalid_request", error.detail)
        return await _refuse(request, services, failure, form.get("client_id"))
    except OAuthError as error:
        return await _refuse(request, services, error, form.get("client_id"))
    await audit.record_alone(
        services.sessions,
        audit.AuditEvent(
            actor=form["client_id"],
            event_type="oauth.token",
            outcome="success",
            request_id=request_id_of(request),
            origin_ip=client_ip(request),
            resource_type="client",
            resource_id=form["client_id"],
            details={"scope": body["scope"]},
        ),
    )
    return JSONResponse(body, headers=_NO_STORE)


def _rate_limited(error: auth_limits.RateLimitedError) -> Response:
    REJECTIONS.labels(code=error.code).inc()
    return JSONResponse(
        {"error": error.code, "error_description": error.detail},
        status_code=error.status,
        headers={**_NO_STORE, "Retry-After": str(error.retry_after_s)},
    )


async def _refuse(
    request: Request, services: Services, error: OAuthError, client_id: str | None
) -> Response:
    REJECTIONS.labels(code=error.error).inc()
    if error.error == "invalid_client" and services.failure_limiter is not None:
        await services.failure_limiter.failed(auth_limits.subjects(client_id, client_ip(request)))
    log.warning("token_refused", error=error.error, client_id=audit.safe_text(client_id))
    # The claimed client id is recorded only when it has a client id's shape (audit.safe_text
    # bounds and escapes anything else anyway); never the secret.
    claimed = client_id if client_id and domain.is_client_id(client_id) else None
    details = (
        {"claimed_client_id": client_id[:MAX_CLAIMED_ID_LENGTH]}
        if client_id and claimed is None
        else {}
    )
    await audit.record_alone(
        services.sessions,
        audit.AuditEvent(
            actor=claimed,
            event_type="oauth.token",
            outcome="failure",
            code=error.error,
            request_id=request_id_of(request),
            origin_ip=client_ip(request),
            resource_type="client",
            resource_id=claimed,
            details=details,
        ),
    )
    headers = dict(_NO_STORE)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="moneypath"'
    return JSONResponse(
        {"error": error.error, "error_description": error.description},
        status_code=error.status,
        headers=headers,
    )


async def jwks_endpoint(request: Request, issuer: TokenIssuer) -> Response:
    await issuer.refresh_if_due()
    return JSONResponse(dict(issuer.jwks()), headers={"Cache-Control": "public, max-age=60"})


def plain_routes(issuer: TokenIssuer) -> list[Route]:
    """Routes outside the JSON pipeline: the token endpoint and the JWKS."""

    async def token(request: Request) -> Response:
        return await token_endpoint(request, issuer)

    async def jwks(request: Request) -> Response:
        return await jwks_endpoint(request, issuer)

    return [
        Route(TOKEN_PATH, token, methods=["POST"]),
        Route(JWKS_PATH, jwks, methods=["GET"]),
    ]


def openapi_paths() -> dict[str, Any]:
    oauth_error = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "string",
                "enum": [
                    "invalid_client",
                    "invalid_scope",
                    "invalid_request",
                    "unsupported_grant_type",
                    "rate_limited",
                ],
            },
            "error_description": {"type": "string"},
        },
    }
    return {
        TOKEN_PATH: {
            "post": {
                "operationId": "oauth_token",
                "summary": "Exchange client credentials for an access token (RFC 6749 §4.4)",
                "tags": ["identity"],
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "required": ["grant_type", "client_id", "client_secret"],
                                "properties": {
                                    "grant_type": {"type": "string", "const": "client_credentials"},
                                    "client_id": {"type": "string", "maxLength": 64},
                                    "client_secret": {"type": "string", "maxLength": 256},
                                    "scope": {"type": "string"},
                                    "key_id": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "An EdDSA access token (at most 300 s)",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": [
                                        "access_token",
                                        "token_type",
                                        "expires_in",
                                        "scope",
                                    ],
                                    "properties": {
                                        "access_token": {"type": "string"},
                                        "token_type": {"type": "string", "const": "Bearer"},
                                        "expires_in": {"type": "integer", "maximum": 300},
                                        "scope": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "400": {
                        "description": "invalid_request, invalid_scope or unsupported_grant_type",
                        "content": {"application/json": {"schema": oauth_error}},
                    },
                    "401": {
                        "description": "invalid_client",
                        "content": {"application/json": {"schema": oauth_error}},
                    },
                    "429": {
                        "description": "rate_limited: too many failed authentications from "
                        "this client id or address; see Retry-After",
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        "content": {"application/json": {"schema": oauth_error}},
                    },
                },
            }
        },
        JWKS_PATH: {
            "get": {
                "operationId": "jwks",
                "summary": "Token verification keys, current and previous",
                "tags": ["identity"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "A JWK Set (RFC 7517)",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }

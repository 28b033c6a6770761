"""Client-side RFC 9421 request signing: what `SignedClient` adds to each request.

A signature over `@method @target-uri content-digest idempotency-key` (label `sig1`, with
`created`, `keyid` and a fresh `nonce`), made through the independent
`http-message-signatures` library as an outside integrator would, so a caller that
succeeds through it also proves the server interoperates. Plus the headers every call
carries: the bearer token and, on writes, an `Idempotency-Key`.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

SIGNATURE_LABEL = "sig1"
SIGNED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class _SignableMessage:
    """The message shape HTTPMessageSigner reads and writes: method, url, headers."""

    method: str
    url: str
    headers: httpx.Headers


def sign_request(
    request: httpx.Request,
    *,
    key_id: str,
    private_key: Ed25519PrivateKey,
    created: datetime | None = None,
    nonce: str | None = None,
    expires: datetime | None = None,
) -> None:
    """Sign `request` in place with label sig1 and ed25519.

    Covers `@method` and `@target-uri`, `idempotency-key` when the header is present and
    `content-digest` (RFC 9530 sha-256, added here) when there is a body. `created`
    defaults to now and `nonce` to 32 random base64url characters.
    """
    body = request.read()
    covered = ["@method", "@target-uri"]
    if "idempotency-key" in request.headers:
        covered.append("idempotency-key")
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={key_id: private_key}),
    )
    signer.sign(
        _SignableMessage(request.method, str(request.url), request.headers),
        key_id=key_id,
        created=created,
        expires=expires,
        nonce=nonce or secrets.token_urlsafe(24),
        label=SIGNATURE_LABEL,
        covered_component_ids=covered,
        # An empty body is sent without Content-Digest, as API.md allows for a bodiless POST.
        body=body or None,
    )


def new_idempotency_key() -> str:
    return f"mp-{uuid.uuid4()}"


@dataclass(frozen=True)
class PreparedHeaders:
    headers: dict[str, str]
    sign: bool


def prepare_headers(
    method: str,
    token: str,
    *,
    idempotency_key: str | None,
    auto_idempotency_key: bool,
    headers: Mapping[str, str] | None,
    sign: bool | None,
) -> PreparedHeaders:
    signed = sign if sign is not None else method.upper() in SIGNED_METHODS
    all_headers = {"Authorization": f"Bearer {token}"}
    if idempotency_key is None and auto_idempotency_key and method.upper() in SIGNED_METHODS:
        idempotency_key = new_idempotency_key()
    if idempotency_key is not None:
        all_headers["Idempotency-Key"] = idempotency_key
    # Caller headers win, so a test or an operator can send a deliberately odd request.
    all_headers.update(headers or {})
    return PreparedHeaders(all_headers, signed)

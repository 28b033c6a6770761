"""RFC 9421 HTTP Message Signatures on state-changing requests (DESIGN.md's profile).

The signature is checked over a base we build ourselves (`signature_base.py`) with
cryptography's Ed25519, and the RFC 9530 `Content-Digest` with the
`http-message-signatures` library's `ContentDigest`; around them we enforce the label, the
covered components, the freshness window, the binding to the token's key and the nonce's
single use (`nonces.py`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import http_sf
from http_message_signatures import ContentDigest, InvalidSignature
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from app.platform import idempotency
from app.platform.request_auth.admission import Admission
from app.platform.request_auth.jwks import ed25519_public_key
from app.platform.request_auth.nonces import NONCE_TTL_S, SeenNonces
from app.platform.request_auth.refusals import (
    DigestMismatchError,
    InvalidSignatureError,
    KeyNotBoundError,
    SignatureRequiredError,
    StaleRequestError,
)
from app.platform.request_auth.signature_base import (
    FieldLines,
    PublicOrigin,
    RequestComponents,
    check_ed25519,
    field_lines,
    signature_base,
)
from app.platform.web.declarations import Principal

SIGNATURE_LABEL = "sig1"
SIGNATURE_ALGORITHM = "ed25519"
CREATED_PAST_WINDOW_S = 300
CREATED_FUTURE_WINDOW_S = 30
MAX_SIGNATURE_HEADER_LENGTH = 4096
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_ALLOWED_PARAMETERS = frozenset({"created", "expires", "keyid", "nonce", "alg", "tag"})


def _refuse_duplicate_label(key: str, context: str) -> None:
    # RFC 8941 lets the last duplicate win; a proxy that reads the first would then check
    # another signature than we do, so two members under one label are refused.
    if context == "dictionary":
        raise ValueError(f"duplicate label {key!r}")


def _parse_dictionary(value: str, what: str, *, unique: bool = False) -> dict[str, Any]:
    if len(value) > MAX_SIGNATURE_HEADER_LENGTH:
        raise InvalidSignatureError(f"{what} is too long")
    try:
        parsed = http_sf.parse(
            value.encode("latin-1"),
            tltype="dictionary",
            on_duplicate_key=_refuse_duplicate_label if unique else None,
        )
    except (ValueError, TypeError, UnicodeEncodeError):
        raise InvalidSignatureError(f"{what} is not a structured dictionary") from None
    if not isinstance(parsed, dict):
        raise InvalidSignatureError(f"{what} is not a structured dictionary")
    return parsed


def _joined(fields: FieldLines, name: str) -> str | None:
    lines = fields.get(name)
    return ", ".join(lines) if lines is not None else None


class Rfc9421Verifier:
    """Checks the `sig1` RFC 9421 signature of a state-changing request (DESIGN.md).

    Order: presence -> structure and parameters -> freshness -> key binding -> signature
    -> Content-Digest -> nonce single use. The nonce is recorded last, so a request that
    fails any check cannot burn a legitimate client's nonce.
    """

    def __init__(
        self,
        *,
        public_base_url: str,
        sessions: async_sessionmaker[AsyncSession],
        nonce_ttl_s: int = NONCE_TTL_S,
        clock: Callable[[], float] = time.time,
        admission: Admission | None = None,
    ) -> None:
        """`sessions` should be autocommit ones (db.create_autocommit_engine); with
        ordinary sessions the nonce still commits, only with a WAL-flush wait.

        With `admission`, the nonce, the client's `is_active` check and the request's
        Idempotency-Key claim are one statement (admission.py); the authenticator then
        leaves `is_active` to this verifier (`checks_active`)."""
        self._origin = PublicOrigin(public_base_url)
        self._nonces = SeenNonces(sessions, nonce_ttl_s)
        self._clock = clock
        self._admission = admission

    @property
    def checks_active(self) -> bool:
        return self._admission is not None

    def target_uri(self, request: Request) -> str:
        return self._components(request, {}).target_uri()

    def _components(self, request: Request, fields: FieldLines) -> RequestComponents:
        scope = request.scope
        path = scope.get("raw_path") or request.url.path.encode()
        query = scope.get("query_string") or b""
        return RequestComponents(
            self._origin, scope["method"], path.decode("latin-1"), query.decode("latin-1"), fields
        )

    async def verify(
        self,
        request: Request,
        body: bytes,
        principal: Principal | None,
        claim: idempotency.ClaimRequest | None = None,
    ) -> idempotency.EarlyClaim:
        """Raises a 401 DomainError; `claim` is claimed with the nonce when this verifier
        has an admission (otherwise it is ignored and left to the idempotency stage)."""
        fields = field_lines(request.scope["headers"])
        signature_input = _joined(fields, "signature-input")
        signature = _joined(fields, "signature")
        if signature_input is None or signature is None:
            raise SignatureRequiredError(
                "state-changing requests need an RFC 9421 signature (Signature-Input, Signature)"
            )
        inputs = _parse_dictionary(signature_input, "Signature-Input", unique=True)
        signatures = _parse_dictionary(signature, "Signature", unique=True)
        if list(inputs) != [SIGNATURE_LABEL] or list(signatures) != [SIGNATURE_LABEL]:
            raise InvalidSignatureError(f"send exactly one signature, labelled {SIGNATURE_LABEL}")
        member = inputs[SIGNATURE_LABEL]
        covered_items, params = member
        if not isinstance(covered_items, list):
            raise InvalidSignatureError("Signature-Input sig1 must be an inner list")
        covered = self._covered_names(covered_items)
        keyid, nonce = self._check_parameters(params)
        self._check_coverage(fields, body, covered)
        self._check_freshness(params)
        if principal is None or principal.key_id is None or principal.key_jwk is None:
            raise KeyNotBoundError("the access token binds no signing key")
        if keyid != principal.key_id:
            raise KeyNotBoundError("the request was signed with a key the token does not bind")
        components = self._components(request, fields)
        self._check_signature(
            components, covered, member, signatures[SIGNATURE_LABEL], principal.key_jwk
        )
        digest = _joined(fields, "content-digest")
        if digest is not None:
            self._check_digest(digest, body)
        if self._admission is None:
            await self._nonces.claim(keyid, nonce)
            return idempotency.EarlyClaim()
        return await self._admission.admit(principal.client_id, keyid, nonce, claim)

    @staticmethod
    def _covered_names(items: list[Any]) -> list[str]:
        names: list[str] = []
        for value, item_params in items:
            if not isinstance(value, str) or item_params:
                raise InvalidSignatureError("covered components must be plain names")
            names.append(value)
        return names

    def _check_parameters(self, params: Mapping[str, Any]) -> tuple[str, str]:
        unknown = set(params) - _ALLOWED_PARAMETERS
        if unknown:
            raise InvalidSignatureError(f"unknown signature parameters: {sorted(unknown)}")
        created, keyid, nonce = params.get("created"), params.get("keyid"), params.get("nonce")
        if type(created) is not int or not isinstance(keyid, str) or not isinstance(nonce, str):
            raise InvalidSignatureError(
                "created, keyid and nonce are required signature parameters"
            )
        if not _NONCE.match(nonce):
            raise InvalidSignatureError("nonce must be 16 to 128 base64url characters")
        if "alg" in params and params["alg"] != SIGNATURE_ALGORITHM:
            raise InvalidSignatureError(f"alg must be {SIGNATURE_ALGORITHM}")
        if "expires" in params:
            expires = params["expires"]
            if type(expires) is not int or expires <= self._clock():
                raise StaleRequestError("the signature has expired")
        return keyid, nonce

    @staticmethod
    def _check_coverage(fields: FieldLines, body: bytes, covered: list[str]) -> None:
        required = {"@method", "@target-uri"}
        if body or "content-digest" in fields:
            if "content-digest" not in fields:
                raise DigestMismatchError("a request with a body needs a Content-Digest header")
            required.add("content-digest")
        if "idempotency-key" in fields:
            required.add("idempotency-key")
        missing = required - set(covered)
        if missing:
            raise InvalidSignatureError(f"the signature must cover {sorted(missing)}")

    def _check_freshness(self, params: Mapping[str, Any]) -> None:
        now = self._clock()
        created = int(params["created"])
        if created < now - CREATED_PAST_WINDOW_S or created > now + CREATED_FUTURE_WINDOW_S:
            raise StaleRequestError(
                f"created must lie within [now-{CREATED_PAST_WINDOW_S} s, "
                f"now+{CREATED_FUTURE_WINDOW_S} s]"
            )

    @staticmethod
    def _check_signature(
        components: RequestComponents,
        covered: list[str],
        member: tuple[list[Any], Mapping[str, Any]],
        signature: tuple[Any, Mapping[str, Any]],
        jwk: Mapping[str, Any],
    ) -> None:
        try:
            key = ed25519_public_key(jwk)
        except ValueError:
            raise InvalidSignatureError("the bound key is not an Ed25519 key") from None
        tag = member[1].get("tag")
        if tag is not None and not isinstance(tag, str):
            raise InvalidSignatureError("tag must be a string")
        # Section 2.3: the parsed member serialized again, so a signer's own spacing in
        # Signature-Input does not matter.
        as_list: list[Any] = [member]
        base = signature_base(components, covered, http_sf.ser(as_list))
        check_ed25519(key, signature[0], base)

    @staticmethod
    def _check_digest(value: str, body: bytes) -> None:
        members = _parse_dictionary(value, "Content-Digest")
        if "sha-256" not in members:
            raise DigestMismatchError("Content-Digest must carry a sha-256 member")
        try:
            ContentDigest.verify(value, body)
        except InvalidSignature:
            raise DigestMismatchError("the body does not match Content-Digest") from None

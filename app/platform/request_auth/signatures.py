"""RFC 9421 HTTP Message Signatures on state-changing requests (DESIGN.md's profile).

The signature itself is checked by the `http-message-signatures` library and the RFC 9530
`Content-Digest` with its `ContentDigest`; around them we enforce the label, the covered
components, the freshness window, the binding to the token's key and the nonce's single
use (`nonces.py`).
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import http_sf
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from http_message_signatures import (
    ContentDigest,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
    algorithms,
)
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
from app.platform.web.declarations import Principal

SIGNATURE_LABEL = "sig1"
SIGNATURE_ALGORITHM = "ed25519"
CREATED_PAST_WINDOW_S = 300
CREATED_FUTURE_WINDOW_S = 30
MAX_SIGNATURE_HEADER_LENGTH = 4096
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_ALLOWED_PARAMETERS = frozenset({"created", "expires", "keyid", "nonce", "alg", "tag"})


class _Headers:
    """Read-only header view in wire order, as the library's resolver expects."""

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self._fields = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def __iter__(self) -> Any:
        return iter(dict.fromkeys(name for name, _ in self._fields))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(f.lower() == name.lower() for f, _ in self._fields)


@dataclass(frozen=True, slots=True)
class _Message:
    method: str
    url: str
    headers: _Headers


class _BoundKey(HTTPSignatureKeyResolver):
    def __init__(self, key_id: str, key: Ed25519PublicKey) -> None:
        self._key_id = key_id
        self._key = key

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey | None:
        return self._key if key_id == self._key_id else None

    def resolve_private_key(self, key_id: str) -> Any:
        raise KeyError("verification only")


class _Verifier(HTTPMessageVerifier):
    # The freshness window is enforced by us (with its own error code) before the library
    # runs; the library's own skew only has to admit our +30 s future allowance.
    max_clock_skew = datetime.timedelta(seconds=CREATED_FUTURE_WINDOW_S)


def _parse_dictionary(value: str, what: str) -> dict[str, Any]:
    if len(value) > MAX_SIGNATURE_HEADER_LENGTH:
        raise InvalidSignatureError(f"{what} is too long")
    try:
        parsed = http_sf.parse(value.encode("latin-1"), tltype="dictionary")
    except (ValueError, TypeError, UnicodeEncodeError):
        raise InvalidSignatureError(f"{what} is not a structured dictionary") from None
    if not isinstance(parsed, dict):
        raise InvalidSignatureError(f"{what} is not a structured dictionary")
    return parsed


def _header(request: Request, name: str) -> str | None:
    values = request.headers.getlist(name)
    return ", ".join(values) if values else None


class Rfc9421Verifier:
    """Checks the `sig1` RFC 9421 signature of a state-changing request (DESIGN.md).

    Order: presence -> structure and parameters -> freshness -> key binding -> signature
    (library) -> Content-Digest -> nonce single use. The nonce is recorded last, so a
    request that fails any check cannot burn a legitimate client's nonce.
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
        self._base_url = public_base_url.rstrip("/")
        self._nonces = SeenNonces(sessions, nonce_ttl_s)
        self._clock = clock
        self._admission = admission

    @property
    def checks_active(self) -> bool:
        return self._admission is not None

    def target_uri(self, request: Request) -> str:
        # Never from the Host header: a proxy or a client could make that say anything.
        path = request.scope.get("raw_path") or request.url.path.encode()
        query = request.scope.get("query_string") or b""
        uri = self._base_url + path.decode("latin-1")
        return uri + ("?" + query.decode("latin-1") if query else "")

    async def verify(
        self,
        request: Request,
        body: bytes,
        principal: Principal | None,
        claim: idempotency.ClaimRequest | None = None,
    ) -> idempotency.EarlyClaim:
        """Raises a 401 DomainError; `claim` is claimed with the nonce when this verifier
        has an admission (otherwise it is ignored and left to the idempotency stage)."""
        signature_input = _header(request, "signature-input")
        signature = _header(request, "signature")
        if signature_input is None or signature is None:
            raise SignatureRequiredError(
                "state-changing requests need an RFC 9421 signature (Signature-Input, Signature)"
            )
        inputs = _parse_dictionary(signature_input, "Signature-Input")
        signatures = _parse_dictionary(signature, "Signature")
        if list(inputs) != [SIGNATURE_LABEL] or list(signatures) != [SIGNATURE_LABEL]:
            raise InvalidSignatureError(f"send exactly one signature, labelled {SIGNATURE_LABEL}")
        covered_items, params = inputs[SIGNATURE_LABEL]
        if not isinstance(covered_items, list):
            raise InvalidSignatureError("Signature-Input sig1 must be an inner list")
        covered = self._covered_names(covered_items)
        keyid, nonce = self._check_parameters(params)
        self._check_coverage(request, body, covered)
        self._check_freshness(params)
        if principal is None or principal.key_id is None or principal.key_jwk is None:
            raise KeyNotBoundError("the access token binds no signing key")
        if keyid != principal.key_id:
            raise KeyNotBoundError("the request was signed with a key the token does not bind")
        self._check_signature(request, keyid, principal.key_jwk)
        digest = _header(request, "content-digest")
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
    def _check_coverage(request: Request, body: bytes, covered: list[str]) -> None:
        required = {"@method", "@target-uri"}
        if body or "content-digest" in request.headers:
            if "content-digest" not in request.headers:
                raise DigestMismatchError("a request with a body needs a Content-Digest header")
            required.add("content-digest")
        if "idempotency-key" in request.headers:
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

    def _check_signature(self, request: Request, keyid: str, jwk: Mapping[str, Any]) -> None:
        try:
            key = ed25519_public_key(jwk)
        except ValueError:
            raise InvalidSignatureError("the bound key is not an Ed25519 key") from None
        message = _Message(
            method=request.method.upper(),
            url=self.target_uri(request),
            headers=_Headers(request.headers.raw),
        )
        verifier = _Verifier(
            signature_algorithm=algorithms.ED25519, key_resolver=_BoundKey(keyid, key)
        )
        try:
            verifier.verify(message, max_age=None, expect_tag=None)
        except InvalidSignature:
            raise InvalidSignatureError("the signature does not verify") from None
        except Exception:  # noqa: BLE001 - any library refusal of hostile input is a 401
            raise InvalidSignatureError("the signature could not be checked") from None

    @staticmethod
    def _check_digest(value: str, body: bytes) -> None:
        members = _parse_dictionary(value, "Content-Digest")
        if "sha-256" not in members:
            raise DigestMismatchError("Content-Digest must carry a sha-256 member")
        try:
            ContentDigest.verify(value, body)
        except InvalidSignature:
            raise DigestMismatchError("the body does not match Content-Digest") from None

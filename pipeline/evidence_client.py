"""The pipeline's client of the evidence service, over HTTP only.

It authenticates as a service client: an OAuth2 client-credentials token from the API's
`/v1/oauth/token` (bound to the client's Ed25519 key), and every POST signed per RFC 9421
(label sig1, ed25519, Content-Digest per RFC 9530, a fresh nonce), exactly as API.md asks
of any integrator. Both come from the platform's client rooms (`app.platform.client_tokens`
and `client_signing`, the ones `SignedClient` uses), so there is one token cache and one
signer on the caller's side.

Configuration comes from the environment (see `sink_from_env`); the CI secret store holds
the client secret and the private key, never the repository.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import stamina
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.platform.client_credentials import ClientCredentials
from app.platform.client_signing import sign_request
from app.platform.client_tokens import TokenCache, TokenRequestError
from app.platform.retries import FullJitter
from pipeline.bundle import Appended
from pipeline.keys import private_key
from pipeline.runner import EvidenceWriteError

DEFAULT_EVIDENCE_URL = "http://127.0.0.1:8081"
DEFAULT_ISSUER_URL = "http://127.0.0.1:8000"
TIMEOUT_S = 10.0
MAX_ATTEMPTS = 3
RETRY_BASE_MS = 500
RETRY_CAP_MS = 4000
RETRY_TOTAL_S = 60.0
# The evidence service refuses attachments above 512 KiB by default; bigger reports go gzip'd.
ATTACHMENT_COMPRESS_ABOVE_BYTES = 256 * 1024
MAX_PAGES = 50

_MEDIA_TYPES = {
    ".json": "application/json",
    ".jsonl": "application/jsonl",
    ".xml": "application/xml",
    ".txt": "text/plain",
}


class _RetryableAnswerError(Exception):
    """The evidence service answered 5xx or 409: worth another attempt."""


class EvidenceClient:
    """Writes and reads evidence as one service client. Every call has a timeout."""

    def __init__(
        self,
        *,
        evidence_url: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        key_id: str,
        private_key: Ed25519PrivateKey,
        http: httpx.Client | None = None,
    ) -> None:
        self._evidence = httpx.Client(base_url=evidence_url.rstrip("/"), timeout=TIMEOUT_S)
        self._issuer = http or httpx.Client(base_url=token_url.rstrip("/"), timeout=TIMEOUT_S)
        self._client_id = client_id
        self._client_secret = client_secret
        self._key_id = key_id
        self._private_key = private_key
        self._tokens = TokenCache(
            self._issuer, ClientCredentials(client_id, client_secret, key_id, private_key)
        )
        # Every record this client appended, for the run's evidence bundle.
        self.appended: list[Appended] = []

    @property
    def client_id(self) -> str:
        """The service client this writes as: the evidence service records it as the writer."""
        return self._client_id

    def close(self) -> None:
        self._evidence.close()
        self._issuer.close()

    # ---- auth -----------------------------------------------------------------------------
    def _access_token(self) -> str:
        try:
            return self._tokens.get()
        except TokenRequestError as error:
            raise EvidenceWriteError(str(error)) from None

    # ---- calls ----------------------------------------------------------------------------
    def post(self, path: str, document: Mapping[str, Any]) -> dict[str, Any]:
        """POST a JSON document, signed, with an Idempotency-Key derived from its bytes.

        Retries (bounded) reuse the same key, so a lost response cannot duplicate a record.
        Raises EvidenceWriteError when the service is unreachable or refuses the document.
        """
        body = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
        key = "pipeline-" + hashlib.sha256(path.encode() + b"\0" + body).hexdigest()[:48]
        # Transport errors, 5xx and 409 (the same key still in flight) are worth repeating;
        # any other refusal is final.
        backoff = FullJitter(
            lambda error: isinstance(error, httpx.HTTPError | _RetryableAnswerError),
            RETRY_BASE_MS,
            RETRY_CAP_MS,
        )
        try:
            for attempt in stamina.retry_context(
                on=backoff, attempts=MAX_ATTEMPTS, timeout=RETRY_TOTAL_S
            ):
                with attempt:
                    return self._post_once(path, body, key)
        except httpx.HTTPError as error:
            raise EvidenceWriteError(f"evidence service unreachable: {error!r}") from None
        except _RetryableAnswerError as error:
            raise EvidenceWriteError(str(error)) from None
        raise EvidenceWriteError("no attempt made")

    def _post_once(self, path: str, body: bytes, key: str) -> dict[str, Any]:
        request = self._evidence.build_request(
            "POST",
            path,
            content=body,
            headers={
                "Authorization": f"Bearer {self._access_token()}",
                "Content-Type": "application/json",
                "Idempotency-Key": key,
            },
        )
        sign_request(request, key_id=self._key_id, private_key=self._private_key)
        response = self._evidence.send(request)
        if response.status_code in (200, 201):
            result: dict[str, Any] = response.json()
            return result
        problem = f"{path} answered {response.status_code}: {response.text[:500]}"
        if response.status_code >= 500 or response.status_code == 409:
            raise _RetryableAnswerError(problem)
        raise EvidenceWriteError(problem)

    def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET a JSON document. Raises EvidenceWriteError on any failure."""
        try:
            response = self._evidence.get(
                path,
                params=dict(params or {}),
                headers={"Authorization": f"Bearer {self._access_token()}"},
            )
        except httpx.HTTPError as error:
            raise EvidenceWriteError(f"evidence service unreachable: {error!r}") from None
        if response.status_code != 200:
            raise EvidenceWriteError(f"{path} answered {response.status_code}: {response.text}")
        result: dict[str, Any] = response.json()
        return result

    def list_records(self, filters: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every record matching `filters`, following cursors for at most MAX_PAGES pages."""
        found: list[dict[str, Any]] = []
        params = {**filters, "limit": "200"}
        for _ in range(MAX_PAGES):
            page = self.get("/v1/evidence", params)
            found.extend(page["data"])
            if not page.get("next_cursor"):
                return found
            params["cursor"] = str(page["next_cursor"])
        raise EvidenceWriteError(f"more than {MAX_PAGES * 200} records for {dict(filters)}")

    def upload(self, path: Path, name: str) -> str:
        """Store a report as an attachment; return its digest (sha256:<hex>)."""
        content = path.read_bytes()
        media_type = _MEDIA_TYPES.get(Path(name).suffix, "application/octet-stream")
        if len(content) > ATTACHMENT_COMPRESS_ABOVE_BYTES:
            content, media_type = gzip.compress(content, mtime=0), "application/gzip"
        stored = self.post(
            "/v1/attachments",
            {"media_type": media_type, "content_base64": base64.b64encode(content).decode()},
        )
        expected = "sha256:" + hashlib.sha256(content).hexdigest()
        if stored.get("digest") != expected:
            raise EvidenceWriteError(f"attachment stored as {stored.get('digest')}, not {expected}")
        return expected

    # ---- EvidenceSink ---------------------------------------------------------------------
    def write(self, record: Mapping[str, Any], attachments: Sequence[tuple[str, Path]]) -> str:
        """Upload the report files, then append the record referencing them by digest."""
        refs = [
            {"name": name[:256], "digest": self.upload(path, name)} for name, path in attachments
        ]
        document = {**record, "attachments": refs} if refs else dict(record)
        stored = self.post("/v1/evidence", document)
        self.appended.append(
            Appended(str(stored["id"]), int(stored["seq"]), str(stored["collected_at"]))
        )
        return str(stored["id"])


class UnconfiguredSink:
    """Stands in when no credentials are configured, so the run fails and says why."""

    def __init__(self, missing: Sequence[str]) -> None:
        self._missing = tuple(missing)

    def write(self, record: Mapping[str, Any], attachments: Sequence[tuple[str, Path]]) -> str:
        raise EvidenceWriteError(f"evidence credentials not configured: {', '.join(self._missing)}")


def client_from_env(
    evidence_url: str | None, env: Mapping[str, str] | None = None
) -> EvidenceClient | UnconfiguredSink:
    """Build the client from PIPELINE_* variables.

    EVIDENCE_URL (or `evidence_url`), PIPELINE_TOKEN_URL (the API base URL),
    PIPELINE_CLIENT_ID, PIPELINE_CLIENT_SECRET, PIPELINE_KEY_ID and the Ed25519 private key
    as PEM in PIPELINE_SIGNING_KEY_PEM or in the file named by PIPELINE_SIGNING_KEY.
    """
    environ = os.environ if env is None else env
    names = ("PIPELINE_CLIENT_ID", "PIPELINE_CLIENT_SECRET", "PIPELINE_KEY_ID")
    missing = [name for name in names if not environ.get(name)]
    key = private_key(environ)
    if key is None:
        missing.append("PIPELINE_SIGNING_KEY(_PEM)")
    if missing or key is None:
        return UnconfiguredSink(missing)
    return EvidenceClient(
        evidence_url=evidence_url or environ.get("EVIDENCE_URL") or DEFAULT_EVIDENCE_URL,
        token_url=environ.get("PIPELINE_TOKEN_URL") or DEFAULT_ISSUER_URL,
        client_id=environ["PIPELINE_CLIENT_ID"],
        client_secret=environ["PIPELINE_CLIENT_SECRET"],
        key_id=environ["PIPELINE_KEY_ID"],
        private_key=key,
    )


def sink_from_env(evidence_url: str | None) -> EvidenceClient | UnconfiguredSink:
    return client_from_env(evidence_url)

"""Build provenance: an in-toto Statement v1 with a SLSA Provenance v1 predicate, signed in
a DSSE envelope with the pipeline's Ed25519 key (securesystemslib's DSSE implementation).

The statement names each built artifact by its sha-256; a deploy step that holds only the
artifact's digest can find the envelope in evidence and check that the pipeline signed it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey  # type: ignore[attr-defined]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUILD_TYPE = "https://moneypath.dev/pipeline/build/v1"
BUILDER_ID = "https://moneypath.dev/pipeline"


def statement(
    subjects: Mapping[str, str],
    *,
    commit: str,
    repository: str,
    parameters: Mapping[str, Any],
    dependencies: Sequence[Mapping[str, Any]],
    invocation_id: str,
    started_on: str,
    finished_on: str,
) -> dict[str, Any]:
    """The in-toto Statement: `subjects` maps artifact names to `sha256:<hex>` digests."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": name, "digest": {"sha256": digest.removeprefix("sha256:")}}
            for name, digest in sorted(subjects.items())
        ],
        "predicateType": SLSA_PROVENANCE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"commit": commit, **parameters},
                "resolvedDependencies": [
                    {"uri": f"git+{repository}", "digest": {"gitCommit": commit}},
                    *dependencies,
                ],
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID},
                "metadata": {
                    "invocationId": invocation_id,
                    "startedOn": started_on,
                    "finishedOn": finished_on,
                },
            },
        },
    }


def _public(key_id: str, key: Ed25519PublicKey) -> SSlibKey:
    return SSlibKey.from_crypto(key, keyid=key_id)


def sign(document: Mapping[str, Any], key_id: str, key: Ed25519PrivateKey) -> dict[str, Any]:
    """The DSSE envelope over the statement's canonical JSON bytes."""
    payload = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    envelope.sign(CryptoSigner(key, _public(key_id, key.public_key())))
    signed: dict[str, Any] = envelope.to_dict()
    return signed


def public_key_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def verify(envelope: Mapping[str, Any], key_id: str, public_pem: str) -> dict[str, Any]:
    """The statement inside `envelope` once its signature by `key_id` checks out.

    Raises ValueError when the envelope is malformed, unsigned by that key, or not an
    in-toto statement.
    """
    try:
        key = serialization.load_pem_public_key(public_pem.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the provenance key is not Ed25519")
        parsed = Envelope.from_dict(dict(envelope))
        parsed.verify([_public(key_id, key)], 1)
    except (VerificationError, KeyError, TypeError) as error:
        raise ValueError(f"provenance signature does not verify: {error}") from None
    if parsed.payload_type != PAYLOAD_TYPE:
        raise ValueError(f"unexpected payload type {parsed.payload_type}")
    document: dict[str, Any] = json.loads(parsed.payload)
    if document.get("_type") != STATEMENT_TYPE:
        raise ValueError("the envelope holds no in-toto statement")
    return document

"""Checkpoints (signed tree heads): the C2SP note text, key ids, and signature checks.

Pure: signing happens in OpenBao (see `signing.py`); verifying needs only the public key,
which is what lets `evidence verify` work offline.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class CheckpointError(ValueError):
    """A checkpoint is malformed or its signature does not verify."""


def note_text(origin: str, size: int, root: bytes) -> str:
    """The C2SP checkpoint body: `<origin>\\n<size>\\n<base64 root>\\n`."""
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def key_id_for(public_key: bytes) -> str:
    """A stable id derived from the key itself, so a verifier can check the pairing."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class PublicKey:
    key_id: str
    raw: bytes
    version: int
    current: bool

    def as_json(self) -> dict[str, Any]:
        pem = (
            Ed25519PublicKey.from_public_bytes(self.raw)
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        return {
            "key_id": self.key_id,
            "version": self.version,
            "current": self.current,
            "algorithm": "ed25519",
            "pem": pem,
            "jwk": {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": base64.urlsafe_b64encode(self.raw).decode().rstrip("="),
                "kid": self.key_id,
                "alg": "EdDSA",
                "use": "sig",
            },
        }


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    timestamp: str
    key_id: str
    signature: bytes

    @property
    def note(self) -> str:
        return note_text(self.origin, self.size, self.root_hash)

    def as_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "size": self.size,
            "root_hash": self.root_hash.hex(),
            "timestamp": self.timestamp,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
            "note": self.note,
        }


def public_key_from_json(entry: Mapping[str, Any]) -> bytes:
    """The raw Ed25519 key from a published entry (its JWK, else its PEM)."""
    jwk = entry.get("jwk")
    if isinstance(jwk, Mapping) and jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
        x = str(jwk.get("x", ""))
        raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
    else:
        loaded = serialization.load_pem_public_key(str(entry.get("pem", "")).encode())
        if not isinstance(loaded, Ed25519PublicKey):
            raise CheckpointError("public key is not Ed25519")
        raw = loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if len(raw) != 32:
        raise CheckpointError("public key has the wrong length")
    return raw


def verify_checkpoint(checkpoint: Mapping[str, Any], public_keys: Mapping[str, bytes]) -> bytes:
    """Check a checkpoint document; return its root hash. Raises CheckpointError.

    `public_keys` maps key id to raw key. The note must match the size and root fields,
    and the signature must verify over the note with the key the checkpoint names.
    """
    try:
        origin = str(checkpoint["origin"])
        size = int(checkpoint["size"])
        root = bytes.fromhex(str(checkpoint["root_hash"]))
        signature = base64.b64decode(str(checkpoint["signature"]), validate=True)
        key_id = str(checkpoint["key_id"])
        note = str(checkpoint["note"])
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"checkpoint is malformed: {type(error).__name__}") from None
    if len(root) != 32:
        raise CheckpointError("root hash must be 32 bytes")
    if note != note_text(origin, size, root):
        raise CheckpointError("note does not match the checkpoint's origin, size and root")
    raw = public_keys.get(key_id)
    if raw is None:
        raise CheckpointError(f"no public key with id {key_id}")
    if key_id_for(raw) != key_id:
        raise CheckpointError("key id does not belong to the public key")
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, note.encode())
    except InvalidSignature:
        raise CheckpointError("checkpoint signature does not verify") from None
    return root

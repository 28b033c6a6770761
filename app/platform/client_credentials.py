"""A moneypath API client's credentials, as the CLI, the drills and the tests load them:
the client id and secret, and the Ed25519 key its tokens bind and its requests are signed with."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


class CredentialsFileError(ValueError):
    """A credentials file is missing a field, unreadable, or names a key that is not Ed25519."""


@dataclass(frozen=True)
class ClientCredentials:
    """What a client needs to call the API: its id and secret, and its bound signing key."""

    client_id: str
    client_secret: str = field(repr=False)
    key_id: str
    private_key: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def from_file(cls, path: Path) -> ClientCredentials:
        """Read a credentials file written by `moneypath clients create --out`.

        It is JSON with `client_id`, `client_secret`, `key_id` and `key_path` (a PEM file,
        relative paths resolved against the credentials file). Raises CredentialsFileError.
        """
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise CredentialsFileError(f"cannot read credentials {path}: {error}") from None
        if not isinstance(document, dict):
            raise CredentialsFileError(f"{path} must hold a JSON object")
        missing = [
            name
            for name in ("client_id", "client_secret", "key_id", "key_path")
            if not isinstance(document.get(name), str) or not document[name]
        ]
        if missing:
            raise CredentialsFileError(f"{path} lacks {', '.join(missing)}")
        key_path = Path(document["key_path"])
        if not key_path.is_absolute():
            key_path = path.parent / key_path
        return cls(
            client_id=document["client_id"],
            client_secret=document["client_secret"],
            key_id=document["key_id"],
            private_key=load_private_key(key_path),
        )


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load an unencrypted Ed25519 private key from a PEM file. Raises CredentialsFileError."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise CredentialsFileError(f"cannot load private key {path}: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CredentialsFileError(f"{path} is not an Ed25519 private key")
    return key


def private_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(private_key: Ed25519PrivateKey) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )

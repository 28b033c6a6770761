"""The pipeline's own Ed25519 key, from the environment (the CI secret store, never the repo).

The same key authenticates the pipeline to the evidence service (RFC 9421 signatures) and
signs its build provenance (DSSE), so a provenance signature and a record's submitter name
one identity.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def private_key(env: Mapping[str, str] | None = None) -> Ed25519PrivateKey | None:
    """The key as PEM in PIPELINE_SIGNING_KEY_PEM or in the file PIPELINE_SIGNING_KEY."""
    environ = os.environ if env is None else env
    pem = environ.get("PIPELINE_SIGNING_KEY_PEM")
    if not pem and environ.get("PIPELINE_SIGNING_KEY"):
        pem = Path(environ["PIPELINE_SIGNING_KEY"]).read_text()
    if not pem:
        return None
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("PIPELINE_SIGNING_KEY must be an Ed25519 private key")
    return key


def signing_identity(
    env: Mapping[str, str] | None = None,
) -> tuple[str, Ed25519PrivateKey] | None:
    """(PIPELINE_KEY_ID, key) when both are configured."""
    environ = os.environ if env is None else env
    key = private_key(environ)
    key_id = environ.get("PIPELINE_KEY_ID", "")
    return (key_id, key) if key is not None and key_id else None

"""Token signing cost: an Ed25519 key kept in Vault KV (signed locally) versus Vault
transit ed25519 signing (one HTTP call per token). Prints per-token p50/p99 for both.

    .venv/bin/python loadtests/token_signing_bench.py [N]
"""

from __future__ import annotations

import base64
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import hvac
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.entrypoints.devstack import Ports, Stack
from app.entrypoints.launchers.openbao import DEV_ROOT_TOKEN

CLAIMS = {
    "iss": "http://127.0.0.1:8000",
    "sub": "cli_bench",
    "aud": "moneypath",
    "scope": "payments:read payments:write",
    "cnf": {"kid": "key_bench", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": "A" * 43}},
}


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def percentiles(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"{name}: n={len(ordered)} p50={p50:.3f} ms p99={p99:.3f} ms")


def local_kv(count: int) -> list[float]:
    key = Ed25519PrivateKey.generate()  # as loaded once from KV at start-up
    samples = []
    for index in range(count):
        started = time.perf_counter()
        now = int(time.time())
        jwt.encode(
            {**CLAIMS, "iat": now, "exp": now + 300, "jti": str(index)},
            key,
            algorithm="EdDSA",
            headers={"kid": "jwt_bench"},
        )
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def transit(client: hvac.Client, count: int) -> list[float]:
    client.secrets.transit.create_key(name="jwt-bench", key_type="ed25519")
    header = b64url(json.dumps({"alg": "EdDSA", "kid": "jwt_bench", "typ": "at+jwt"}).encode())
    samples = []
    for index in range(count):
        started = time.perf_counter()
        now = int(time.time())
        payload = b64url(
            json.dumps({**CLAIMS, "iat": now, "exp": now + 300, "jti": str(index)}).encode()
        )
        signing_input = f"{header}.{payload}".encode()
        signed = client.secrets.transit.sign_data(
            name="jwt-bench", hash_input=base64.b64encode(signing_input).decode()
        )
        signature = base64.b64decode(signed["data"]["signature"].split(":", 2)[2])
        _token = f"{header}.{payload}.{b64url(signature)}"
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    percentiles("KV key, local EdDSA signing", local_kv(count))
    with tempfile.TemporaryDirectory() as root:
        stack = Stack(root=Path(root), ports=Ports.free(), watch_policies=False)
        try:
            stack.start_vault()
            client = hvac.Client(url=stack.vault_addr, token=DEV_ROOT_TOKEN, timeout=5)
            client.sys.enable_secrets_engine("transit", path="transit")
            percentiles("Vault transit ed25519 signing", transit(client, count))
        finally:
            stack.stop_all()


if __name__ == "__main__":
    main()

"""Checkpoint signing with an Ed25519 key that never leaves OpenBao (transit engine).

The service asks transit to sign each checkpoint note and publishes the key's public
halves (every version: current and previous), so rotation in OpenBao
(`bao write -f transit/keys/evidence-checkpoint/rotate`) needs no change here.
"""

from __future__ import annotations

import asyncio
import base64
import threading

import hvac
import requests

from app.platform.vault import TRANSIT_MOUNT, Vault, VaultUnavailableError
from evidence.checkpoints import PublicKey, key_id_for

SIGN_TIMEOUT_S = 5.0


class TransitSigner:
    """Signs with `transit/keys/<name>` (type ed25519). Thread-safe; hvac is synchronous."""

    def __init__(self, vault: Vault, key_name: str) -> None:
        self._vault = vault
        self._key_name = key_name
        self._lock = threading.Lock()
        self._keys: dict[int, PublicKey] = {}

    def ensure_key(self) -> None:
        """Create the key on first start. Raises VaultUnavailableError."""
        try:
            self._vault.ensure_transit_key(self._key_name, key_type="ed25519")
        except (requests.RequestException, hvac.exceptions.VaultError) as error:
            raise VaultUnavailableError(
                f"cannot create the signing key: {type(error).__name__}"
            ) from None
        self.refresh()

    def refresh(self) -> list[PublicKey]:
        """Reload the public keys from OpenBao. Raises VaultUnavailableError."""
        try:
            response = self._vault.raw.secrets.transit.read_key(
                name=self._key_name, mount_point=TRANSIT_MOUNT
            )
        except (requests.RequestException, hvac.exceptions.VaultError) as error:
            raise VaultUnavailableError(
                f"cannot read the signing key: {type(error).__name__}"
            ) from None
        data = response["data"]
        latest = int(data["latest_version"])
        keys: dict[int, PublicKey] = {}
        for version_text, entry in data["keys"].items():
            raw = base64.b64decode(entry["public_key"])
            version = int(version_text)
            keys[version] = PublicKey(key_id_for(raw), raw, version, version == latest)
        with self._lock:
            self._keys = keys
        return self.public_keys()

    def rotate(self) -> list[PublicKey]:
        """Make a new key version current; earlier versions stay published for verifying
        old checkpoints. Raises VaultUnavailableError."""
        try:
            self._vault.raw.secrets.transit.rotate_key(
                name=self._key_name, mount_point=TRANSIT_MOUNT
            )
        except (requests.RequestException, hvac.exceptions.VaultError) as error:
            raise VaultUnavailableError(
                f"cannot rotate the signing key: {type(error).__name__}"
            ) from None
        return self.refresh()

    def public_keys(self) -> list[PublicKey]:
        with self._lock:
            return sorted(self._keys.values(), key=lambda key: key.version, reverse=True)

    def sign(self, message: bytes) -> tuple[str, bytes]:
        """Sign `message`; return (key id, raw signature). Raises VaultUnavailableError."""
        try:
            response = self._vault.raw.secrets.transit.sign_data(
                name=self._key_name,
                hash_input=base64.b64encode(message).decode(),
                mount_point=TRANSIT_MOUNT,
            )
        except (requests.RequestException, hvac.exceptions.VaultError) as error:
            raise VaultUnavailableError(f"signing failed: {type(error).__name__}") from None
        # Transit answers `vault:v<version>:<base64 signature>`.
        _, version_text, encoded = str(response["data"]["signature"]).split(":", 2)
        version = int(version_text.removeprefix("v"))
        with self._lock:
            known = self._keys.get(version)
        if known is None:
            known = {key.version: key for key in self.refresh()}.get(version)
        if known is None:
            raise VaultUnavailableError("transit signed with a key version it does not list")
        return known.key_id, base64.b64decode(encoded)

    async def arefresh(self) -> list[PublicKey]:
        """Reload the keys, so a rotation done elsewhere (CLI, operator) shows at once."""
        return await asyncio.wait_for(asyncio.to_thread(self.refresh), SIGN_TIMEOUT_S)

    async def asign(self, message: bytes) -> tuple[str, bytes]:
        return await asyncio.wait_for(asyncio.to_thread(self.sign, message), SIGN_TIMEOUT_S)

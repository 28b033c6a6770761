"""The Vault (OpenBao) client: login, KV v2 secrets and transit, with timeouts everywhere.

hvac is synchronous, so async callers go through `asyncio.to_thread`. Calls are rare
(start-up, PII encryption, rotation), so a thread per call is cheap enough.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import hvac
import requests

from app.platform.errors import DependencyUnavailableError
from app.platform.settings import VaultLogin

KV_MOUNT = "kv"
TRANSIT_MOUNT = "transit"
VAULT_TIMEOUT_S = 3


class VaultUnavailableError(DependencyUnavailableError):
    """Vault (OpenBao) could not be reached or refused to answer in time."""


class DatabaseNotConfiguredError(RuntimeError):
    """Vault holds no database URL at the path; the bootstrap (`moneypath up`) writes it."""


class Vault:
    """A logged-in Vault client. Build it with `Vault.login(addr, login)`."""

    def __init__(self, client: hvac.Client) -> None:
        self._client = client

    @classmethod
    def login(cls, addr: str, login: VaultLogin) -> Vault:
        """Log in with the dev token or an AppRole. Raises VaultUnavailableError."""
        client = hvac.Client(url=addr, timeout=VAULT_TIMEOUT_S)
        try:
            if login.token is not None:
                client.token = login.token
            else:
                client.auth.approle.login(role_id=login.role_id, secret_id=login.secret_id)
            if not client.is_authenticated():
                raise VaultUnavailableError(f"Vault at {addr} refused our credentials")
        except (requests.RequestException, hvac.exceptions.VaultError) as error:
            raise VaultUnavailableError(
                f"Vault at {addr} is unreachable: {type(error).__name__}"
            ) from None
        return cls(client)

    @property
    def raw(self) -> hvac.Client:
        return self._client

    def ensure_engines(self) -> None:
        """Mount KV v2 at kv/ and transit at transit/ if missing. Safe to run twice."""
        mounted = self._client.sys.list_mounted_secrets_engines()
        mounts = mounted.get("data", mounted)
        if f"{KV_MOUNT}/" not in mounts:
            self._client.sys.enable_secrets_engine("kv", path=KV_MOUNT, options={"version": "2"})
        if f"{TRANSIT_MOUNT}/" not in mounts:
            self._client.sys.enable_secrets_engine("transit", path=TRANSIT_MOUNT)

    def ensure_transit_key(self, name: str, key_type: str = "aes256-gcm96") -> None:
        try:
            self._client.secrets.transit.read_key(name=name, mount_point=TRANSIT_MOUNT)
        except hvac.exceptions.InvalidPath:
            self._client.secrets.transit.create_key(
                name=name, key_type=key_type, mount_point=TRANSIT_MOUNT
            )

    def read_secret(self, path: str) -> dict[str, Any] | None:
        try:
            response = self._client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=KV_MOUNT, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            return None
        data: dict[str, Any] = response["data"]["data"]
        return data

    def database_url(self, path: str) -> str:
        """The `url` stored at kv/`path`: how every service finds its database.

        Raises DatabaseNotConfiguredError when there is none.
        """
        secret = self.read_secret(path)
        if secret is None or not secret.get("url"):
            raise DatabaseNotConfiguredError(
                f"Vault has no kv/{path}: run `moneypath up` or the bootstrap first"
            )
        return str(secret["url"])

    def write_secret(self, path: str, data: dict[str, Any]) -> None:
        self._client.secrets.kv.v2.create_or_update_secret(
            path=path, secret=data, mount_point=KV_MOUNT
        )

    def encrypt(self, key: str, plaintext: bytes) -> str:
        response = self._client.secrets.transit.encrypt_data(
            name=key, plaintext=base64.b64encode(plaintext).decode(), mount_point=TRANSIT_MOUNT
        )
        ciphertext: str = response["data"]["ciphertext"]
        return ciphertext

    def decrypt(self, key: str, ciphertext: str) -> bytes:
        response = self._client.secrets.transit.decrypt_data(
            name=key, ciphertext=ciphertext, mount_point=TRANSIT_MOUNT
        )
        return base64.b64decode(response["data"]["plaintext"])

    def health(self) -> bool:
        try:
            status = self._client.sys.read_health_status(method="GET")
        except (requests.RequestException, hvac.exceptions.VaultError):
            return False
        if isinstance(status, dict):
            return not status.get("sealed", True)
        return getattr(status, "status_code", 500) == 200

    async def ahealth(self) -> bool:
        return await asyncio.to_thread(self.health)

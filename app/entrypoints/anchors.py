"""The ledger's chain head, anchored in the evidence log (issue: `verify` trusts no single
database).

The worker writes the chain head (seq and hash) as a `ledger.checkpoint` evidence record
at a fixed cadence; `GET /v1/ledger/verify` reads the latest such record back and the
ledger compares it with the live chain. The evidence log is another database, behind its
own service, and its records are signed into a Merkle tree: rewriting the ledger's
database, even as its owner, cannot rewrite them.

Both sides call the evidence service as one registered client (evidence:write and
evidence:read) whose credentials the bootstrap keeps in Vault (`ANCHOR_CLIENT_SECRET`),
through the shared signing client.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.entrypoints.client_registry import create_client
from app.ledger import api as ledger_api
from app.platform.client_credentials import ClientCredentials, private_pem, public_pem
from app.platform.client_tokens import TokenRequestError
from app.platform.signed_client import AsyncSignedClient
from app.platform.vault import Vault

log = structlog.get_logger("moneypath.anchors")

ANCHOR_CLIENT_SECRET = "moneypath/ledger-anchor-client"  # noqa: S105 - a Vault path
# Reconciliation writes its `recon.run` records as a client of its own (evidence:write
# only), so the trust policy can name it as the one writer of that type.
RECON_CLIENT_SECRET = "moneypath/recon-evidence-client"  # noqa: S105 - a Vault path
CHECKPOINT_TYPE = "ledger.checkpoint"
# PCI DSS 10.3.4: audit records are protected by change detection; SOC 2 CC7.2: the
# system is monitored for anomalies that could compromise its objectives.
CHECKPOINT_CONTROLS = ("PCI-DSS-4.0.1:10.3.4", "SOC2:CC7.2")
CHECKPOINT_ACTOR = "moneypath-worker"
# How far back `latest` looks, and how many pages of 200 it reads at most: the worker
# anchors every LEDGER_CHECKPOINT_INTERVAL_S (60 s by default), 1,440 records a day.
LOOKBACK_S = 86_400
MAX_PAGES = 20
PAGE_SIZE = 200
TIMEOUT = httpx.Timeout(5.0, connect=2.0)


class AnchorError(Exception):
    """The evidence service refused the checkpoint or could not be reached."""


@dataclass(frozen=True, slots=True)
class Anchored:
    head: ledger_api.ChainHead
    record_id: str


def credentials_from_vault(
    vault: Vault, path: str = ANCHOR_CLIENT_SECRET
) -> ClientCredentials | None:
    """An evidence client's credentials (the anchor client's by default), or None when
    the bootstrap registered none."""
    secret = vault.read_secret(path)
    if secret is None:
        return None
    key = serialization.load_pem_private_key(str(secret["private_key_pem"]).encode(), None)
    if not isinstance(key, Ed25519PrivateKey):
        raise AnchorError(f"kv/{path} holds no Ed25519 key")
    return ClientCredentials(
        client_id=str(secret["client_id"]),
        client_secret=str(secret["client_secret"]),
        key_id=str(secret["key_id"]),
        private_key=key,
    )


class EvidenceClient(AsyncSignedClient):
    """A signing client of the evidence service whose tokens come from the API's issuer;
    it owns both connection pools."""

    def __init__(
        self, credentials: ClientCredentials, *, evidence_url: str, issuer_url: str
    ) -> None:
        self._token_http = httpx.AsyncClient(base_url=issuer_url.rstrip("/"), timeout=TIMEOUT)
        super().__init__(
            credentials, base_url=evidence_url, token_http=self._token_http, timeout=TIMEOUT
        )

    async def aclose(self) -> None:
        await super().aclose()
        await self._token_http.aclose()


def evidence_client(
    credentials: ClientCredentials, *, evidence_url: str, issuer_url: str
) -> EvidenceClient:
    return EvidenceClient(credentials, evidence_url=evidence_url, issuer_url=issuer_url)


def recon_evidence_client(
    vault: Vault, *, evidence_url: str, issuer_url: str
) -> EvidenceClient | None:
    """Reconciliation's client of the evidence service; None when none is registered
    (runs then owe their records until a process with the client writes them)."""
    credentials = credentials_from_vault(vault, RECON_CLIENT_SECRET)
    if credentials is None:
        log.warning("recon_evidence_disabled", reason=f"no kv/{RECON_CLIENT_SECRET}")
        return None
    return evidence_client(credentials, evidence_url=evidence_url, issuer_url=issuer_url)


def register_recon_client(vault: Vault, database_url: str) -> None:
    """Dev stack and tests: reconciliation's evidence client (evidence:write only)."""
    register_client(
        vault,
        database_url,
        path=RECON_CLIENT_SECRET,
        name="reconciliation-evidence",
        scopes=("evidence:write",),
    )


class EvidenceAnchors:
    """What `GET /v1/ledger/verify` asks for the latest anchored head (ledger.verify_routes'
    AnchorSource), over the API's own client of the evidence service."""

    def __init__(self, client: AsyncSignedClient) -> None:
        self._client = client

    async def latest(self) -> tuple[ledger_api.ChainHead, str] | None:
        """Raises ConnectionError when the evidence service cannot answer."""
        try:
            found = await latest(self._client)
        except (AnchorError, TokenRequestError) as error:
            raise ConnectionError(str(error)) from None
        return None if found is None else (found.head, found.record_id)


def register_client(
    vault: Vault,
    database_url: str,
    *,
    path: str = ANCHOR_CLIENT_SECRET,
    name: str = "ledger-anchor",
    scopes: tuple[str, ...] = ("evidence:write", "evidence:read"),
) -> None:
    """Dev stack and tests: register an evidence client of the apps (by default the
    worker's anchor client: evidence:write, and evidence:read for verify) and keep its
    credentials in Vault at `path`, once.

    In production an operator does the same with `moneypath clients create` and writes
    the secret; the apps only ever read it.
    """
    if vault.read_secret(path) is not None:
        return
    private_key = Ed25519PrivateKey.generate()
    created = create_client(
        database_url, name=name, scopes=scopes, public_pem=public_pem(private_key)
    )
    vault.write_secret(
        path,
        {
            "client_id": created.client.id,
            "client_secret": created.client_secret,
            "key_id": created.key_id,
            "private_key_pem": private_pem(private_key).decode(),
        },
    )


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def write_checkpoint(client: AsyncSignedClient, head: ledger_api.ChainHead) -> str:
    """Record `head` in the evidence log; returns the record id.

    The Idempotency-Key is derived from the head, so a retry, or a second worker
    anchoring the same head, replays the first record instead of writing another.
    """
    now = _time(datetime.now(UTC))
    document: dict[str, Any] = {
        "type": CHECKPOINT_TYPE,
        "control_refs": list(CHECKPOINT_CONTROLS),
        "result": "info",
        "subject": {},
        "actor": CHECKPOINT_ACTOR,
        "started_at": now,
        "finished_at": now,
        "details": {"ledger_seq": head.seq, "ledger_hash": head.hash},
    }
    try:
        response = await client.post(
            "/v1/evidence",
            json=document,
            idempotency_key=f"ledger-checkpoint-{head.seq}-{head.hash[:32]}",
        )
    except httpx.HTTPError as error:
        raise AnchorError(f"evidence service unreachable: {type(error).__name__}") from None
    if response.status_code == 422 and _problem_code(response) == "idempotency_key_reused":
        # This head was anchored before (an idle ledger at the next cadence, or another
        # worker), with other timestamps in the body: that record is the anchor.
        return await _already_anchored(client, head)
    if response.status_code not in (200, 201):
        raise AnchorError(f"evidence refused the checkpoint: {response.status_code}")
    record_id = str(response.json()["id"])
    log.info("ledger_checkpoint_anchored", seq=head.seq, record_id=record_id)
    return record_id


def _problem_code(response: httpx.Response) -> str | None:
    try:
        code = response.json().get("code")
    except ValueError:
        return None
    return code if isinstance(code, str) else None


async def _already_anchored(client: AsyncSignedClient, head: ledger_api.ChainHead) -> str:
    found = await latest(client)
    if found is None or found.head != head:
        raise AnchorError(f"head {head.seq} was anchored before, but is not the latest anchor")
    return found.record_id


async def latest(client: AsyncSignedClient) -> Anchored | None:
    """The newest `ledger.checkpoint` record of the last LOOKBACK_S, or None.

    Raises AnchorError when the evidence service cannot answer: `verify` then says it
    could not compare, rather than that all is well.
    """
    since = _time(datetime.now(UTC) - timedelta(seconds=LOOKBACK_S))
    params: dict[str, Any] = {"type": CHECKPOINT_TYPE, "from": since, "limit": PAGE_SIZE}
    newest: dict[str, Any] | None = None
    for _ in range(MAX_PAGES):
        try:
            response = await client.get("/v1/evidence", params=params)
        except httpx.HTTPError as error:
            raise AnchorError(f"evidence service unreachable: {type(error).__name__}") from None
        if response.status_code != 200:
            raise AnchorError(f"evidence refused the read: {response.status_code}")
        page = response.json()
        for record in page["data"]:
            # Only the anchor client's own records: the server stamps submitted_by from
            # the verified token, so another evidence writer cannot pose as the worker.
            writer = (record.get("submitted_by") or {}).get("client_id")
            if record.get("actor") == CHECKPOINT_ACTOR and writer == client.credentials.client_id:
                newest = record
        if page.get("next_cursor") is None:
            break
        params["cursor"] = page["next_cursor"]
    if newest is None:
        return None
    details = newest["details"]
    return Anchored(
        ledger_api.ChainHead(int(details["ledger_seq"]), str(details["ledger_hash"])),
        str(newest["id"]),
    )

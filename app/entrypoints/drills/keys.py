"""The key-compromise drill: a leaked client key is used by an attacker while the team
rotates the token signing key and the client key under live traffic."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.entrypoints.devstack import Stack
from app.entrypoints.drills.harness import (
    Traffic,
    check_ledger,
    create_client,
    metric_value,
    open_account,
    poll,
    signed,
)
from app.entrypoints.drills.report import DrillReport
from app.entrypoints.launchers.openbao import DEV_ROOT_TOKEN
from app.platform.client_credentials import ClientCredentials, public_pem
from app.platform.client_tokens import TokenRequestError
from app.platform.settings import VaultLogin
from app.platform.signed_client import SignedClient
from app.platform.vault import Vault

DETECTION_DEADLINE_S = 15.0
# The API re-reads the signing key from Vault at most every reload interval (30 s).
ROTATION_DEADLINE_S = 45.0
REPLAYS = 3


def _kid(client: SignedClient) -> str:
    client.tokens.forget()
    return str(jwt.get_unverified_header(client.tokens.get())["kid"])


def key_compromise(stack: Stack, report: DrillReport, operator: ClientCredentials) -> None:
    """Replay captured requests (detected by the signature-rejection metric), rotate the
    JWT signing key and the client's key under four writers, and check the old key is
    refused and nothing acknowledged was lost or booked twice."""
    client = signed(stack, operator)
    admin = signed(stack, create_client(stack, "drill-admin", ["clients:admin"]))
    funding = open_account(client, "debit", unlimited=True)
    targets = [open_account(client, "credit") for _ in range(4)]
    traffic = Traffic(client, funding, targets)
    report.note("traffic: 4 writers signing with the client key that will leak")
    traffic.start()
    time.sleep(1.0)

    # The attacker replays a request captured on the wire: the nonce was seen already.
    captured = client.build("POST", f"/v1/ledger/transactions/{'txn_' + '0' * 24}/void")
    client.send(captured)
    rejected_before = metric_value(
        stack, "moneypath_signature_rejections_total", {"code": "replayed_request"}
    )
    report.note(f"injecting fault: {REPLAYS} replays of a captured signed request")
    answers = [client.send(captured).status_code for _ in range(REPLAYS)]
    report.detected_after_s = poll(
        lambda: (
            metric_value(
                stack, "moneypath_signature_rejections_total", {"code": "replayed_request"}
            )
            >= rejected_before + REPLAYS
        ),
        DETECTION_DEADLINE_S,
    )
    report.note(f"replays answered {answers}; metric rose after {report.detected_after_s} s")
    report.check("replays_refused_401", all(status == 401 for status in answers))
    report.check("detected_by_metric", report.detected_after_s is not None)

    old_kid = _kid(client)
    report.note(f"rotating the JWT signing key (tokens signed with {old_kid} stay valid)")
    vault = Vault.login(stack.vault_addr, VaultLogin(token=DEV_ROOT_TOKEN))
    from app.identity import api as identity_api

    new_kid = identity_api.rotate_signing_key(vault)
    rotated_after_s = poll(lambda: _kid(client) == new_kid, ROTATION_DEADLINE_S)
    report.note(f"new tokens carry kid {new_kid} after {rotated_after_s} s")
    report.check("jwt_key_rotated", rotated_after_s is not None)

    report.note("rotating the client key: new key registered, the leaked one retired now")
    new_key = Ed25519PrivateKey.generate()
    started = time.monotonic()
    response = admin.post(
        f"/v1/clients/{operator.client_id}/keys",
        json={
            "public_key_pem": public_pem(new_key),
            "retire_previous_at": datetime.now(UTC).isoformat(),
        },
    )
    refusal = "" if response.status_code == 201 else response.text[:200]
    if not report.check("client_key_rotated", response.status_code == 201, refusal):
        traffic.stop()
        return
    rotated = ClientCredentials(
        operator.client_id, operator.client_secret, response.json()["key_id"], new_key
    )
    # The writers switch to the new key; writes cut off by the rotation keep their keys.
    traffic.client = signed(stack, rotated)
    acknowledged = len([t for t in traffic.transfers if t.status == 201])
    report.recovered_after_s = poll(
        lambda: len([t for t in traffic.transfers if t.status == 201]) > acknowledged + 4,
        ROTATION_DEADLINE_S,
    )
    report.recovered_after_s = (
        None if report.recovered_after_s is None else time.monotonic() - started
    )
    report.note(f"writes succeed with the new key after {report.recovered_after_s} s")

    leaked = signed(stack, operator)
    body = {"code": "leaked", "currency": "USD", "normal_balance": "credit"}
    try:
        leaked_status = leaked.post("/v1/ledger/accounts", json=body).status_code
    except TokenRequestError as error:
        # The token endpoint refuses to bind a retired key: the expected end.
        leaked_status = error.status_code or -1
    report.note(f"a request with the leaked key answered {leaked_status}")
    report.check("leaked_key_refused", leaked_status in (400, 401))

    time.sleep(1.0)
    traffic.stop()
    still_open = traffic.settle()
    report.note(f"traffic stopped; {len(traffic.transfers)} transfers, answers {traffic.answers}")
    report.check("every_transfer_settled", still_open == 0, f"{still_open} still open")
    check_ledger(report, traffic.client, traffic)
    for http_client in (client, admin, leaked, traffic.client):
        http_client.close()

"""Issue 10 item 9: identifiers are shape-checked before SQL and the audit log, and what
the audit log keeps of hostile input is bounded and escaped."""

from __future__ import annotations

import psycopg
from starlette.testclient import TestClient

from app.entrypoints.devstack import Stack
from app.platform.db import libpq_url
from tests.support.api_client import ClientFactory


def _audit_rows(stack: Stack, request_id: str) -> list[tuple[str | None, str | None, str]]:
    assert stack.database_url is not None
    with psycopg.connect(libpq_url(stack.database_url)) as connection:
        return [
            (row[0], row[1], str(row[2]))
            for row in connection.execute(
                "SELECT actor, code, details FROM platform.audit_log WHERE request_id = %s",
                (request_id,),
            )
        ]


def test_token_request_gets_invalid_client_when_client_id_holds_control_characters(
    api: TestClient, stack: Stack
) -> None:
    request_id = "req-shape-nul-1"
    response = api.post(
        "/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "cli_\x00\x1b[31m\u2028" + "x" * 5000,
            "client_secret": "whatever",
        },
        headers={"X-Request-Id": request_id},
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    rows = _audit_rows(stack, request_id)
    assert len(rows) == 1
    actor, code, details = rows[0]
    assert actor is None
    assert code == "invalid_client"
    assert "\\\\x00" in details
    assert "\\\\x1b" in details
    assert len(details) < 600


def test_token_request_gets_invalid_request_when_key_id_is_malformed(
    api: TestClient, client_factory: ClientFactory
) -> None:
    client = client_factory(scopes=["ledger:read"])
    response = client.fetch_token(key_id="key_\x00")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_path_id_of_odd_shape_answers_404_and_is_audited_escaped(
    api: TestClient, stack: Stack, client_factory: ClientFactory
) -> None:
    client = client_factory(scopes=["kyc:write"])
    request_id = "req-shape-path-1"
    response = client.get(
        "/v1/customers/cus_%00%0a%1b" + "z" * 300, headers={"X-Request-Id": request_id}
    )
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"

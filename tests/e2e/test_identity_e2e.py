"""The independent signer against the API as a real uvicorn process."""

from __future__ import annotations

import httpx

from app.entrypoints.devstack import Stack
from tests.support.api_client import ClientFactory, new_private_key, public_pem


def test_live_api_accepts_independently_signed_request_and_refuses_its_replay(
    live_stack: Stack, client_factory: ClientFactory
) -> None:
    with httpx.Client(base_url=live_stack.api_url, timeout=10) as http:
        client = client_factory(scopes=["clients:admin"], http=http)
        body = {
            "name": "live",
            "scopes": ["ledger:read"],
            "public_key_pem": public_pem(new_private_key()),
        }
        request = client.build("POST", "/v1/clients", json=body, idempotency_key="live-1")
        response = client.send(request)
        assert response.status_code == 201, response.text
        replay = client.send(request)
        assert replay.status_code == 401
        assert replay.json()["code"] == "replayed_request"

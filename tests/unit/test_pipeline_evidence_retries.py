"""The pipeline's evidence client repeats a write only when repeating can help (transport
errors, 5xx, 409 while the same key is in flight), a bounded number of times, with the same
Idempotency-Key; any other refusal is final at once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stamina
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipeline import evidence_client
from pipeline.evidence_client import EvidenceClient
from pipeline.runner import EvidenceWriteError


class _Service:
    """A token endpoint that always answers, and an evidence endpoint answering a script."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.keys: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path == "/v1/oauth/token":
                    status, body = 200, {"access_token": "t", "expires_in": 300}
                else:
                    owner.keys.append(self.headers["idempotency-key"])
                    status = owner.statuses[min(len(owner.keys), len(owner.statuses)) - 1]
                    body = {"id": "evd_1"} if status == 201 else {"code": "x"}
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> _Service:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def _no_waits() -> Iterator[None]:
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


def _client(url: str) -> EvidenceClient:
    return EvidenceClient(
        evidence_url=url,
        token_url=url,
        client_id="cli_pipeline",
        client_secret="not-a-secret",
        key_id="key_1",
        private_key=Ed25519PrivateKey.generate(),
    )


def test_write_succeeds_with_the_same_key_when_the_service_first_answers_503() -> None:
    with _Service([503, 201]) as service:
        client = _client(service.url)
        assert client.post("/v1/evidence", {"type": "ci.gate"}) == {"id": "evd_1"}
        client.close()
    assert len(service.keys) == 2
    assert service.keys[0] == service.keys[1]


def test_write_gives_up_after_the_attempt_cap_when_the_service_keeps_failing() -> None:
    with _Service([503]) as service:
        client = _client(service.url)
        with pytest.raises(EvidenceWriteError, match="503"):
            client.post("/v1/evidence", {"type": "ci.gate"})
        client.close()
    assert len(service.keys) == evidence_client.MAX_ATTEMPTS


def test_write_is_refused_at_once_when_the_service_answers_422() -> None:
    with _Service([422, 201]) as service:
        client = _client(service.url)
        with pytest.raises(EvidenceWriteError, match="422"):
            client.post("/v1/evidence", {"type": "ci.gate"})
        client.close()
    assert len(service.keys) == 1

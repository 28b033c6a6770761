"""A real PostgreSQL outage: the server is killed (-9) under the API and started again.

During the outage every request that needs the database answers 503 `service_unavailable`
with Retry-After (never 500), and /readyz names `db`. After the restart the same app, not
restarted, serves again and the ledger still verifies.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.entrypoints.devstack import Ports, Stack
from app.platform.settings import Settings
from tests.integration.ledger.helpers import key, leg, open_account
from tests.support.api_client import ApiClient, ClientFactory

RECOVERY_DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own with the embedded server: the shared one must stay up."""
    services = Stack(
        root=tmp_path_factory.mktemp("outage"), ports=Ports.free(), watch_policies=False
    )
    with services.running(apps=False):
        yield services


@pytest.fixture(scope="module")
def own_api(own_stack: Stack) -> Iterator[TestClient]:
    from app.entrypoints.asgi import create_app

    settings = Settings.from_env({**own_stack.app_env(), "MONEYPATH_ENV": "test"})
    with TestClient(create_app(settings), base_url=settings.public_base_url) as client:
        yield client


def _ready(api: TestClient) -> bool:
    return api.get("/readyz").status_code == 200


def test_api_answers_503_with_retry_after_and_readyz_names_db_when_postgres_is_down(
    own_stack: Stack, own_api: TestClient, tmp_path: Path
) -> None:
    assert own_stack.database_url is not None
    client: ApiClient = ClientFactory(own_stack.database_url, own_api)(
        scopes=["ledger:write", "ledger:read"]
    )
    source = open_account(client, overdraft_limit_minor=None)["id"]
    target = open_account(client)["id"]
    body = {"status": "posted", "postings": [leg(source, "debit", 10), leg(target, "credit", 10)]}
    assert client.post("/v1/ledger/transactions", json=body, idempotency_key=key()).is_success

    own_stack.kill("postgres")
    write = client.post("/v1/ledger/transactions", json=body, idempotency_key=key())
    read = client.get(f"/v1/ledger/accounts/{target}")
    readiness = own_api.get("/readyz")

    for answer in (write, read):
        assert answer.status_code == 503, answer.text
        assert answer.json()["code"] == "service_unavailable"
        assert int(answer.headers["retry-after"]) > 0
    assert readiness.status_code == 503
    assert readiness.json()["down"] == ["db"]
    metrics = own_api.get("/metrics").text
    assert 'moneypath_dependency_unavailable_total{dependency="db"}' in metrics

    own_stack.start_postgres()
    deadline = time.monotonic() + RECOVERY_DEADLINE_S
    while not _ready(own_api) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _ready(own_api)
    again = client.post("/v1/ledger/transactions", json=body, idempotency_key=key())
    assert again.status_code == 201, again.text
    balance = client.get(f"/v1/ledger/accounts/{target}").json()["balances"]["posted"]
    assert balance == 20
    assert client.get("/v1/ledger/verify").json()["ok"] is True

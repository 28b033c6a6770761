"""Fixtures that start the real PostgreSQL, OpenBao and OPA with the dev-stack code.

The services start once per test session on free ports under a temporary directory, so
tests never collide with a developer's `make run` or with another test run. Set
DATABASE_URL to test against an existing PostgreSQL instead of the embedded one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.entrypoints.devstack import Ports, Stack
from app.platform.settings import Settings
from tests.support.api_client import ClientFactory

# Settings default to production; everything a test starts in this process or below it is
# a test deployment, said explicitly.
os.environ["MONEYPATH_ENV"] = "test"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Real PostgreSQL, OpenBao and OPA, bootstrapped and migrated."""
    services = Stack(
        root=tmp_path_factory.mktemp("stack"),
        ports=Ports.free(),
        database_url=os.environ.get("DATABASE_URL") or None,
        watch_policies=False,
        sim_hold_s=5.0,
    )
    with services.running(apps=False):
        yield services


@pytest.fixture(scope="session")
def settings(stack: Stack) -> Settings:
    return Settings.from_env({**stack.app_env(), "MONEYPATH_ENV": "test"})


@pytest.fixture(scope="session")
def api(stack: Stack, settings: Settings) -> Iterator[TestClient]:
    """The API app in-process (ASGI), talking to the real services."""
    from app.entrypoints.asgi import create_app
    from app.providers.api import ProviderSettings

    app = create_app(settings, ProviderSettings.from_env(stack.app_env()))
    with TestClient(app, base_url=settings.public_base_url) as client:
        yield client


@pytest.fixture(scope="session")
def client_factory(stack: Stack, api: TestClient) -> ClientFactory:
    """`client_factory(scopes=[...], name=None, http=None)`: a real API client with its own
    Ed25519 key that fetches its token and signs mutating requests (RFC 9421). Defaults to
    the in-process `api`; pass `http=httpx.Client(base_url=live_stack.api_url)` for e2e."""
    assert stack.database_url is not None
    return ClientFactory(stack.database_url, api)


@pytest.fixture(scope="session")
def live_stack(stack: Stack) -> Iterator[Stack]:
    """The API (and evidence, once it exists) as real uvicorn processes, for e2e tests."""
    stack.start_api()
    stack.start_evidence()
    try:
        yield stack
    finally:
        stack.stop("evidence")
        stack.stop("api")


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]

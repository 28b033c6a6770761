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


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Real PostgreSQL, OpenBao and OPA, bootstrapped and migrated."""
    services = Stack(
        root=tmp_path_factory.mktemp("stack"),
        ports=Ports.free(),
        database_url=os.environ.get("DATABASE_URL") or None,
        watch_policies=False,
    )
    with services.running(apps=False):
        yield services


@pytest.fixture(scope="session")
def settings(stack: Stack) -> Settings:
    return Settings.from_env({**stack.app_env(), "MONEYPATH_ENV": "test"})


@pytest.fixture(scope="session")
def api(settings: Settings) -> Iterator[TestClient]:
    """The API app in-process (ASGI), talking to the real services."""
    from app.entrypoints.asgi import create_app

    with TestClient(create_app(settings), base_url=settings.public_base_url) as client:
        yield client


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

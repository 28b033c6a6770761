"""Fixtures several integration modules share: plain HTTP clients to the live stack's
API and evidence service, and a connection for the settlement and matching SQL, one of
each per module."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from app.entrypoints.devstack import Stack
from tests.support.staged import Database


@pytest.fixture(scope="module")
def api_http(live_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_stack.api_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def evidence_http(live_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_stack.evidence_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def staged_database(stack: Stack) -> Iterator[Database]:
    """A connection that stages settlement files and records and runs the matching SQL."""
    with Database.of(stack) as database:
        yield database

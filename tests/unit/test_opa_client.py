"""The request path asks OPA once: a connection OPA drops fails closed without a retry."""

from __future__ import annotations

import asyncio

import pytest

from app.platform.opa import Opa, OpaAddress, OpaUnavailableError


def test_decision_is_refused_after_one_attempt_when_opa_drops_the_connection() -> None:
    async def scenario() -> tuple[int, bool]:
        attempts = 0

        async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal attempts
            attempts += 1
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        opa = Opa(f"http://127.0.0.1:{port}", timeout_ms=2000)
        try:
            with pytest.raises(OpaUnavailableError, match="unreachable"):
                await opa.decide("moneypath/authz", {"action": "x"})
            decision_attempts = attempts
            healthy = await opa.healthy()
        finally:
            await opa.close()
            server.close()
            await server.wait_closed()
        return decision_attempts, healthy

    # The library's default (retries=2) would have connected three times.
    assert asyncio.run(scenario()) == (1, False)


def test_address_keeps_scheme_host_and_port_when_parsed() -> None:
    assert OpaAddress.parse("https://opa.internal") == OpaAddress("opa.internal", 443, True)
    assert OpaAddress.parse("http://127.0.0.1:8181/") == OpaAddress("127.0.0.1", 8181, False)
    with pytest.raises(ValueError, match="http"):
        OpaAddress.parse("unix:///run/opa.sock")

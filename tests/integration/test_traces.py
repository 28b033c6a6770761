"""Traces: one server span per request with the SQL under it, our own spans nest under the
request, log lines carry the trace id, and OTLP export happens only when configured."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.testclient import TestClient

from app.entrypoints.devstack import Stack
from app.platform import tracing
from app.providers.api import ProviderClients
from tests.integration.ledger.helpers import key, leg, open_account
from tests.integration.providers.helpers import run


@pytest.fixture(scope="module")
def spans(api: TestClient) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    tracing.provider().add_span_processor(processor)
    yield exporter
    processor.shutdown()


def test_request_has_one_server_span_with_sql_spans_under_it_when_traced(
    api: TestClient, client_factory: Any, spans: InMemorySpanExporter
) -> None:
    client = client_factory(scopes=["ledger:write", "ledger:read"])
    source = open_account(client, overdraft_limit_minor=None)["id"]
    target = open_account(client)["id"]
    body = {"status": "posted", "postings": [leg(source, "debit", 3), leg(target, "credit", 3)]}
    spans.clear()

    response = client.post("/v1/ledger/transactions", json=body, idempotency_key=key())

    assert response.status_code == 201
    finished = spans.get_finished_spans()
    servers = [s for s in finished if s.kind == SpanKind.SERVER]
    assert len(servers) == 1, [s.name for s in servers]
    server = servers[0]
    assert server.attributes is not None
    assert server.attributes.get("http.route") == "/v1/ledger/transactions"
    trace_id = server.context.trace_id
    sql = [s for s in finished if s.attributes and s.attributes.get("db.system") == "postgresql"]
    assert sql, [s.name for s in finished]
    assert all(s.context.trace_id == trace_id for s in sql)


def test_server_span_has_no_receive_or_send_children_when_a_transfer_is_traced(
    api: TestClient, client_factory: Any, spans: InMemorySpanExporter
) -> None:
    client = client_factory(scopes=["ledger:write", "ledger:read"])
    source = open_account(client, overdraft_limit_minor=None)["id"]
    target = open_account(client)["id"]
    body = {"status": "posted", "postings": [leg(source, "debit", 2), leg(target, "credit", 2)]}
    spans.clear()

    response = client.post("/v1/ledger/transactions", json=body, idempotency_key=key())

    assert response.status_code == 201
    finished = spans.get_finished_spans()
    names = [s.name for s in finished]
    assert not [n for n in names if n.endswith((" send", " receive"))], names
    server = next(s for s in finished if s.kind == SpanKind.SERVER)
    assert server.attributes is not None
    status = server.attributes.get(
        "http.status_code", server.attributes.get("http.response.status_code")
    )
    assert status == 201, dict(server.attributes)


def test_own_spans_nest_saga_step_adapter_and_provider_call_when_used(
    spans: InMemorySpanExporter,
) -> None:
    spans.clear()
    with (
        tracing.span("saga.step", step="authorize"),
        tracing.span("adapter.authorize"),
        tracing.provider_call("simulator", "authorize"),
    ):
        pass
    by_name = {s.name: s for s in spans.get_finished_spans()}
    call, adapter, step = (
        by_name["provider.authorize"],
        by_name["adapter.authorize"],
        by_name["saga.step"],
    )
    assert call.attributes is not None
    assert call.attributes["moneypath.provider"] == "simulator"
    assert call.parent is not None
    assert call.parent.span_id == adapter.context.span_id
    assert adapter.parent is not None
    assert adapter.parent.span_id == step.context.span_id


def test_span_is_marked_as_an_error_when_the_call_raises(spans: InMemorySpanExporter) -> None:
    spans.clear()
    with pytest.raises(TimeoutError), tracing.provider_call("simulator", "capture"):
        raise TimeoutError
    [failed] = spans.get_finished_spans()
    assert not failed.status.is_ok


def test_log_lines_carry_the_trace_id_when_a_request_is_traced(
    api: TestClient,
    client_factory: Any,
    spans: InMemorySpanExporter,
    capfd: pytest.CaptureFixture[str],
) -> None:
    client = client_factory(scopes=["ledger:read"])
    spans.clear()
    capfd.readouterr()
    assert client.get("/v1/ledger/verify").status_code == 200
    output = capfd.readouterr().out
    [server] = [
        s
        for s in spans.get_finished_spans()
        if s.kind == SpanKind.SERVER
        and (s.attributes or {}).get("http.route") == "/v1/ledger/verify"
    ]
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    authorized = [line for line in lines if line.get("event") == "request_authorized"]
    assert authorized, output[-2000:]
    assert authorized[-1]["trace_id"] == format(server.context.trace_id, "032x")
    assert len(authorized[-1]["span_id"]) == 16


def test_log_lines_keep_the_callers_trace_id_when_a_sampled_traceparent_is_sent(
    api: TestClient, client_factory: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    # Whether or not an exporter is attached by now (the `spans` fixture attaches one for
    # the rest of the process), the caller's trace continues in the transfer's log lines.
    caller_trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    client = client_factory(scopes=["ledger:write", "ledger:read"])
    source = open_account(client, overdraft_limit_minor=None)["id"]
    target = open_account(client)["id"]
    body = {"status": "posted", "postings": [leg(source, "debit", 4), leg(target, "credit", 4)]}
    capfd.readouterr()

    response = client.post(
        "/v1/ledger/transactions",
        json=body,
        idempotency_key=key(),
        headers={"traceparent": f"00-{caller_trace_id}-00f067aa0ba902b7-01"},
    )

    assert response.status_code == 201
    output = capfd.readouterr().out
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    authorized = [line for line in lines if line.get("event") == "request_authorized"]
    assert authorized, output[-2000:]
    assert authorized[-1]["trace_id"] == caller_trace_id
    assert len(authorized[-1]["span_id"]) == 16
    assert authorized[-1]["span_id"] != "00f067aa0ba902b7"


class _Collector:
    """A local OTLP/HTTP endpoint that records what is posted to it."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                owner.paths.append(self.path)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_spans_go_to_otlp_only_when_an_endpoint_is_configured() -> None:
    assert tracing.export_processor({}) is None
    collector = _Collector()
    try:
        processor = tracing.export_processor({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})
        assert processor is not None
        provider = TracerProvider(resource=Resource.create({"service.name": "t"}))
        provider.add_span_processor(processor)
        with provider.get_tracer("t").start_as_current_span("exported"):
            pass
        assert provider.force_flush(5000)
        provider.shutdown()
    finally:
        collector.close()
    assert collector.paths == ["/v1/traces"]


def test_provider_call_spans_nest_under_the_adapter_and_saga_step_when_a_card_is_authorized(
    stack: Stack, spans: InMemorySpanExporter
) -> None:
    async def authorize(providers: ProviderClients) -> None:
        with tracing.span("saga.authorize"):
            await providers.authorize(
                "acme",
                card_token="tok_visa",
                amount_minor=500,
                currency="EUR",
                idempotency_key=key(),
                capture=False,
            )

    spans.clear()
    run(authorize, stack)
    finished = spans.get_finished_spans()
    by_name = {s.name: s for s in finished}
    step, adapter = by_name["saga.authorize"], by_name["provider.adapter"]
    call = by_name["provider.authorize"]
    assert adapter.parent is not None
    assert adapter.parent.span_id == step.context.span_id
    assert call.parent is not None
    assert call.parent.span_id == adapter.context.span_id
    assert call.attributes is not None
    assert call.attributes["moneypath.provider"] == "acme"
    assert call.attributes["attempt"] == 1

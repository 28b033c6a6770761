"""Spans are recorded only once something reads them (issue 16), and nothing else changes:
a dropped span still has ids for the log lines, and a caller's traceparent keeps its trace.

Each test makes its own provider (the process's one is shared with the other tests, which
may have attached an exporter already) and instruments a small app through
`tracing.instrument_app`, the same call the services make.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from app.platform import tracing

CALLER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"
SAMPLED_TRACEPARENT = f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01"
HEX_32 = re.compile(r"[0-9a-f]{32}")
HEX_16 = re.compile(r"[0-9a-f]{16}")


def new_provider() -> tracing.GatedTracerProvider:
    return tracing.GatedTracerProvider(resource=Resource.create({"service.name": "gate-test"}))


def read_by(provider: tracing.GatedTracerProvider) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


class Seen:
    """What the handler saw: the log fields of its current span, and whether it records."""

    def __init__(self) -> None:
        self.log_fields: list[dict[str, Any]] = []
        self.recording: list[bool] = []


@pytest.fixture
def served() -> Iterator[tuple[TestClient, tracing.GatedTracerProvider, Seen]]:
    provider = new_provider()
    seen = Seen()

    async def transfer(_: Request) -> Response:
        # The structlog processor every log line goes through, on an empty event.
        seen.log_fields.append(dict(tracing.add_trace_context(None, "info", {})))
        seen.recording.append(trace.get_current_span().is_recording())
        return JSONResponse({"id": "txn_1"}, status_code=201)

    app = Starlette(routes=[Route("/v1/ledger/transactions", transfer, methods=["POST"])])
    tracing.instrument_app(app, [], tracer_provider=provider)
    with TestClient(app) as client:
        yield client, provider, seen
    provider.shutdown()


def test_spans_are_not_recorded_but_keep_log_ids_when_no_processor_is_attached() -> None:
    provider = new_provider()
    tracer = provider.own_tracer()

    with tracer.start_as_current_span("db.commit_pipeline", attributes={"statements": 3}) as span:
        fields = tracing.add_trace_context(None, "info", {})

    assert not provider.recording
    assert not span.is_recording()
    assert not getattr(span, "attributes", None)
    assert HEX_32.fullmatch(fields["trace_id"])
    assert HEX_16.fullmatch(fields["span_id"])
    assert fields["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert fields["span_id"] == format(span.get_span_context().span_id, "016x")


def test_spans_are_recorded_with_their_attributes_when_a_processor_is_attached() -> None:
    provider = new_provider()
    tracer = provider.own_tracer()
    exporter = read_by(provider)

    with tracer.start_as_current_span("db.commit_pipeline", attributes={"statements": 3}):
        pass

    assert provider.recording
    [finished] = exporter.get_finished_spans()
    assert finished.name == "db.commit_pipeline"
    assert finished.attributes is not None
    assert finished.attributes["statements"] == 3
    provider.shutdown()


def test_one_tracer_serves_every_span_when_spans_are_made_repeatedly() -> None:
    provider = new_provider()

    assert provider.own_tracer() is provider.own_tracer()


def test_request_log_ids_are_fresh_and_nothing_records_when_no_processor_is_attached(
    served: tuple[TestClient, tracing.GatedTracerProvider, Seen],
) -> None:
    client, _, seen = served

    assert client.post("/v1/ledger/transactions").status_code == 201
    assert client.post("/v1/ledger/transactions").status_code == 201

    assert seen.recording == [False, False]
    first, second = seen.log_fields
    for fields in (first, second):
        assert HEX_32.fullmatch(fields["trace_id"])
        assert HEX_16.fullmatch(fields["span_id"])
    assert first["trace_id"] != second["trace_id"]


def test_caller_trace_id_is_kept_when_no_processor_is_attached(
    served: tuple[TestClient, tracing.GatedTracerProvider, Seen],
) -> None:
    client, _, seen = served

    response = client.post("/v1/ledger/transactions", headers={"traceparent": SAMPLED_TRACEPARENT})

    assert response.status_code == 201
    assert seen.recording == [False]
    [fields] = seen.log_fields
    assert fields["trace_id"] == CALLER_TRACE_ID
    # The request's own span, a child of the caller's, not the caller's span itself.
    assert HEX_16.fullmatch(fields["span_id"])
    assert fields["span_id"] != CALLER_SPAN_ID


def test_server_span_is_recorded_under_the_caller_trace_when_a_processor_is_attached(
    served: tuple[TestClient, tracing.GatedTracerProvider, Seen],
) -> None:
    client, provider, seen = served
    exporter = read_by(provider)

    response = client.post("/v1/ledger/transactions", headers={"traceparent": SAMPLED_TRACEPARENT})

    assert response.status_code == 201
    assert seen.recording == [True]
    [server] = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert format(server.context.trace_id, "032x") == CALLER_TRACE_ID
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == CALLER_SPAN_ID
    assert server.attributes is not None
    assert server.attributes.get("http.route") == "/v1/ledger/transactions"
    [fields] = seen.log_fields
    assert fields["trace_id"] == CALLER_TRACE_ID
    assert fields["span_id"] == format(server.context.span_id, "016x")


def test_recording_starts_when_a_processor_is_attached_after_requests_were_served(
    served: tuple[TestClient, tracing.GatedTracerProvider, Seen],
) -> None:
    client, provider, seen = served
    assert client.post("/v1/ledger/transactions").status_code == 201

    exporter = read_by(provider)
    assert client.post("/v1/ledger/transactions").status_code == 201

    assert seen.recording == [False, True]
    servers = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert [s.name for s in servers] == ["POST /v1/ledger/transactions"]
    assert format(servers[0].context.trace_id, "032x") == seen.log_fields[1]["trace_id"]

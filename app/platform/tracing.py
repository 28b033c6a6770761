"""OpenTelemetry traces: one provider per process, exported over OTLP only when configured.

- `configure_tracing(service_name)` makes the process's TracerProvider once. With
  OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) set, spans go out over OTLP/HTTP
  through a bounded batch queue with a timeout; otherwise they are made (so logs carry a
  trace id) and exported nowhere. Tests add an in-memory exporter to `provider()`.
- `instrument_app(app, engines)` instruments Starlette once, with its own instrumentor's
  `instrument_app` only (never also the ASGI middleware, which would double every server
  span), and each async SQLAlchemy engine through its `.sync_engine`.
- `span(name, **attributes)` is the helper domains use for their own spans: a payment's
  saga step, an adapter, a provider call (`provider_call(provider, operation)`), so a
  trace reads API -> saga step -> adapter -> provider call.
"""

from __future__ import annotations

import contextlib
import functools
import os
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, ParamSpec, TypeVar

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, Status, StatusCode
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

TRACER_NAME = "moneypath"
# Bounded: a slow or absent collector costs dropped spans, never memory or request time.
EXPORT_QUEUE_SIZE = 2048
EXPORT_BATCH_SIZE = 256
EXPORT_TIMEOUT_S = 5.0

P = ParamSpec("P")
R = TypeVar("R")
_provider: TracerProvider | None = None
_traced_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def configure_tracing(service_name: str, env: Mapping[str, str] | None = None) -> TracerProvider:
    """The process's TracerProvider, made on the first call (later calls return it)."""
    global _provider
    if _provider is not None:
        return _provider
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    processor = export_processor(os.environ if env is None else env)
    if processor is not None:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def export_processor(env: Mapping[str, str]) -> BatchSpanProcessor | None:
    """An OTLP/HTTP batch processor when an endpoint is configured, else None (no export)."""
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if not endpoint and env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        # The generic endpoint is a base URL; the signal path is appended (OTLP spec).
        endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return BatchSpanProcessor(
        OTLPSpanExporter(endpoint=endpoint, timeout=EXPORT_TIMEOUT_S),
        max_queue_size=EXPORT_QUEUE_SIZE,
        max_export_batch_size=EXPORT_BATCH_SIZE,
    )


def provider() -> TracerProvider:
    return _provider if _provider is not None else configure_tracing("moneypath")


def instrument_app(app: Starlette, engines: Sequence[AsyncEngine]) -> None:
    """Instrument one Starlette app and its engines; calling it twice changes nothing."""
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.instrumentation.starlette import StarletteInstrumentor

    tracer_provider = provider()
    if not getattr(app, "_is_instrumented_by_opentelemetry", False):
        StarletteInstrumentor.instrument_app(app, tracer_provider=tracer_provider)
        _without_event_spans(app)
    for engine in engines:
        if engine.sync_engine not in _traced_engines:
            # The instrumentor's declared range stops below SQLAlchemy 2.1, but the engine
            # events it hooks (before/after_cursor_execute) are unchanged in 2.1;
            # tests/integration/test_traces.py checks that the SQL spans are there.
            SQLAlchemyInstrumentor().instrument(
                engine=engine.sync_engine, tracer_provider=tracer_provider, skip_dep_check=True
            )
            _traced_engines.add(engine.sync_engine)


def _without_event_spans(app: Starlette) -> None:
    """No child span per ASGI `receive`/`send` event under the server span.

    A signed POST made three of them (one receive, two sends: headers, body) at about
    25 µs of CPU each (issue 16), and they only time the copying of bytes. The server span
    keeps its status code, route and duration. The Starlette instrumentor has no option for
    this, but the ASGI middleware it adds does (`exclude_spans`); its arguments are read
    when Starlette builds the middleware stack, at the first request. If the instrumentor
    ever adds it differently, nothing is found here and the spans simply stay.
    """
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    for middleware in app.user_middleware:
        added: object = middleware.cls
        if added is OpenTelemetryMiddleware:
            middleware.kwargs["exclude_spans"] = ["receive", "send"]


@contextlib.contextmanager
def span(name: str, **attributes: str | int | bool) -> Iterator[Span]:
    """A child span of whatever is current; an exception marks it as an error and goes on."""
    tracer = provider().get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(name, attributes=dict(attributes)) as current:
        try:
            yield current
        except Exception as error:
            current.set_status(Status(StatusCode.ERROR, type(error).__name__))
            raise


def provider_call(provider_name: str, operation: str, **attributes: str | int | bool) -> Any:
    """`with tracing.provider_call("simulator", "authorize"):` around one outbound call."""
    return span(
        f"provider.{operation}",
        **{"moneypath.provider": provider_name, "moneypath.operation": operation},
        **attributes,
    )


def traced(
    name: str,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorator: run an async function (a saga step, an adapter call) in span `name`."""

    def wrap(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(function)
        async def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            with span(name):
                return await function(*args, **kwargs)

        return inner

    return wrap


def add_trace_context(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: put the current trace and span ids on every log line."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event

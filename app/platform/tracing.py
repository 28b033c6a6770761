"""OpenTelemetry traces: one provider per process, exported over OTLP only when configured.

- `configure_tracing(service_name)` makes the process's TracerProvider once. With
  OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) set, spans go out over OTLP/HTTP
  through a bounded batch queue with a timeout. Otherwise nothing would ever read a
  span, so none is recorded: each still gets its trace and span ids (logs carry them,
  a traceparent's trace id is kept), but no attributes, events or finished copy are
  built. Attaching a span processor (`provider().add_span_processor`, as the OTLP set-up
  and the tests' in-memory exporter do) switches recording on from then on.
- `instrument_app(app, engines)` instruments Starlette once, with its own instrumentor's
  `instrument_app` only (never also the ASGI middleware, which would double every server
  span), and each async SQLAlchemy engine through its `.sync_engine`. The instrumentor's
  middleware runs behind `server_spans.ServerSpanGate`, which skips its attribute work
  while spans are not recorded.
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
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Sampler, SamplingResult
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes
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
_traced_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


class ReaderGate(Sampler):
    """Records spans only while something reads them; until then every span is dropped.

    A recorded span with no processor behind it is pure cost: its attributes are cleaned
    and stored, and `end()` builds a ReadableSpan that nobody receives (with the server
    span's attribute work, about 0.4 ms of API CPU per signed transfer, issue 16). A
    dropped span is still a span: the SDK gives it fresh ids (under a traceparent, the
    caller's trace id) and it becomes the current span, so log lines and context
    propagation are unchanged. Once `open`, the
    provider's own sampler (the SDK default, parent-based always-on, or
    OTEL_TRACES_SAMPLER) decides as before.
    """

    def __init__(self, when_read: Sampler) -> None:
        self._when_read = when_read
        self.open = False

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        sampler = self._when_read if self.open else ALWAYS_OFF
        return sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        state = "open" if self.open else "closed"
        return f"ReaderGate({state}, {self._when_read.get_description()})"


class GatedTracerProvider(TracerProvider):
    """A TracerProvider whose spans are recorded once a span processor is attached.

    `add_span_processor` is the one way spans get a reader (processors cannot be
    removed), so it is also where recording is switched on: the OTLP exporter in
    `configure_tracing` and a test's in-memory exporter go through the same door.
    """

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource=resource)
        self.gate = ReaderGate(self.sampler)
        # Tracers copy the provider's sampler when made; none is made before this line.
        self.sampler = self.gate
        self._own_tracer: Tracer | None = None

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self.gate.open = True

    @property
    def recording(self) -> bool:
        return self.gate.open

    def own_tracer(self) -> Tracer:
        """The tracer of `span()`: made once, since `get_tracer` costs about 13 µs a call
        (it builds an InstrumentationScope and sets a warnings filter each time)."""
        if self._own_tracer is None:
            self._own_tracer = self.get_tracer(TRACER_NAME)
        return self._own_tracer


_provider: GatedTracerProvider | None = None


def configure_tracing(
    service_name: str, env: Mapping[str, str] | None = None
) -> GatedTracerProvider:
    """The process's TracerProvider, made on the first call (later calls return it)."""
    global _provider
    if _provider is not None:
        return _provider
    provider = GatedTracerProvider(resource=Resource.create({"service.name": service_name}))
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


def provider() -> GatedTracerProvider:
    return _provider if _provider is not None else configure_tracing("moneypath")


def instrument_app(
    app: Starlette,
    engines: Sequence[AsyncEngine],
    tracer_provider: GatedTracerProvider | None = None,
) -> None:
    """Instrument one Starlette app and its engines; calling it twice changes nothing.

    `tracer_provider` defaults to the process's (`provider()`)."""
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.instrumentation.starlette import StarletteInstrumentor

    from app.platform.server_spans import gate_server_spans

    if tracer_provider is None:
        tracer_provider = provider()
    if not getattr(app, "_is_instrumented_by_opentelemetry", False):
        StarletteInstrumentor.instrument_app(app, tracer_provider=tracer_provider)
        gate_server_spans(app, tracer_provider.gate)
    for engine in engines:
        if engine.sync_engine not in _traced_engines:
            # The instrumentor's declared range stops below SQLAlchemy 2.1, but the engine
            # events it hooks (before/after_cursor_execute) are unchanged in 2.1;
            # tests/integration/test_traces.py checks that the SQL spans are there.
            SQLAlchemyInstrumentor().instrument(
                engine=engine.sync_engine, tracer_provider=tracer_provider, skip_dep_check=True
            )
            _traced_engines.add(engine.sync_engine)


@contextlib.contextmanager
def span(name: str, **attributes: str | int | bool) -> Iterator[Span]:
    """A child span of whatever is current; an exception marks it as an error and goes on."""
    with (
        provider().own_tracer().start_as_current_span(name, attributes=dict(attributes)) as current
    ):
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

"""The API's server span, recorded only when something reads spans (issue 16).

`gate_server_spans(app, gate)` swaps the OpenTelemetry ASGI middleware that the
Starlette instrumentor adds for `ServerSpanGate`, which runs that middleware while the
gate is open and, while it is closed, only keeps the trace context a dropped span needs.
`app.platform.tracing` owns the gate (its `ReaderGate` sampler) and calls this when it
instruments an app; this module is imported only then, so processes that never serve
HTTP do not load the ASGI instrumentation.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, cast

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware, asgi_getter
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
from opentelemetry.trace import SpanKind, Tracer
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send


class Gate(Protocol):
    """Open while a span processor reads spans (`tracing.ReaderGate`)."""

    open: bool


def gate_server_spans(app: Starlette, gate: Gate) -> None:
    """Put `ServerSpanGate` where the instrumentor put its ASGI middleware, and drop the
    per-event spans.

    No child span per ASGI `receive`/`send` event under the server span: a signed POST
    made three of them (one receive, two sends: headers, body) at about 25 µs of CPU each
    (issue 16), and they only time the copying of bytes. The server span keeps its status
    code, route and duration. The Starlette instrumentor has no option for this, but the
    ASGI middleware it adds does (`exclude_spans`); its arguments are read when Starlette
    builds the middleware stack, at the first request. If the instrumentor ever adds it
    differently, nothing is found here: the event spans come back and the middleware's
    attribute work runs on every request (spans still record only while the gate is open).
    """
    for index, middleware in enumerate(app.user_middleware):
        added: object = middleware.cls
        if added is OpenTelemetryMiddleware:
            options: dict[str, Any] = {**middleware.kwargs, "exclude_spans": ["receive", "send"]}
            app.user_middleware[index] = Middleware(ServerSpanGate, gate=gate, options=options)


class ServerSpanGate:
    """The instrumentor's ASGI middleware while spans are recorded; a dropped span otherwise.

    The OpenTelemetry middleware does its attribute work whether or not the span records:
    it reads every header for the request attributes, matches the path against every
    route for the span name, and builds the attributes of its HTTP metrics (which go to
    the no-op meter: this process exports metrics through prometheus-client and sets no
    OpenTelemetry MeterProvider). While the gate is closed this class does only what a
    dropped server span needs: the caller's context from `traceparent`/`tracestate`/
    `baggage` (the global propagator, as the middleware uses), and a current span with
    its own ids under it, so log lines carry the trace id as before. Anything unusual (an
    open gate, a non-HTTP scope, suppressed instrumentation, a response propagator or
    excluded URLs, which only the middleware handles) goes to the middleware itself.
    """

    def __init__(self, app: ASGIApp, gate: Gate, options: dict[str, Any]) -> None:
        """`options`: the instrumentor's arguments for its middleware (its tracer among them)."""
        self.app = app
        self._gate = gate
        self._tracer: Tracer = options["tracer"]
        self._recorded = OpenTelemetryMiddleware(app, **options)
        self._excluding = bool(
            os.environ.get("OTEL_PYTHON_STARLETTE_EXCLUDED_URLS")
            or os.environ.get("OTEL_PYTHON_EXCLUDED_URLS")
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self._gate.open
            or scope["type"] != "http"
            or self._excluding
            or not is_http_instrumentation_enabled()
            # (untyped upstream; it returns the propagator set for responses, or None)
            or get_global_response_propagator() is not None  # type: ignore[no-untyped-call]
        ):
            await self._recorded(scope, receive, send)
            return
        if trace.get_current_span() is trace.INVALID_SPAN:
            parent = propagate.extract(cast(dict[str, Any], scope), getter=asgi_getter)
            kind = SpanKind.SERVER
        else:
            parent = otel_context.get_current()
            kind = SpanKind.INTERNAL
        dropped = self._tracer.start_span("HTTP", context=parent, kind=kind)
        token = otel_context.attach(trace.set_span_in_context(dropped, parent))
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)

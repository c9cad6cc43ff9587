"""Trace propagation in the worker: each run continues the trace stored with its event."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["parent_context", "record_failure", "trace_id_hex", "tracer", "tracing_enabled"]

_propagator = TraceContextTextMapPropagator()
tracer = trace.get_tracer("automate.aio")


def parent_context(traceparent: str, tracestate: str = "") -> Context | None:
    """The remote parent described by a stored ``traceparent`` (None when there is none)."""
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    return _propagator.extract(carrier)


def record_failure(span: trace.Span | None, message: str, exc_type: str = "") -> None:
    """Mark ``span`` failed with an already redacted ``message``. Spans are started with
    ``record_exception=False``: OpenTelemetry's own recording would store the raw exception message and
    stack trace, which can carry a resolved secret."""
    if span is None:
        return
    span.set_status(trace.Status(trace.StatusCode.ERROR, message))
    attributes = {"exception.message": message}
    if exc_type:
        attributes["exception.type"] = exc_type
    span.add_event("exception", attributes)


def trace_id_hex(span: trace.Span) -> str:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def tracing_enabled() -> bool:
    """Whether an SDK tracer provider is installed. Without one, spans cost time and record nothing, so
    the executor skips them and takes the run's trace id from the stored traceparent."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)

"""W3C trace context capture (emit side). The worker continues the stored context (automate.aio)."""

from __future__ import annotations

from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["current_trace_context", "trace_id_of"]

_propagator = TraceContextTextMapPropagator()


def current_trace_context() -> tuple[str, str]:
    """``(traceparent, tracestate)`` of the current OpenTelemetry span; empty strings when none."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent", ""), carrier.get("tracestate", "")


def trace_id_of(traceparent: str) -> str:
    """The 32-hex trace id inside a ``traceparent`` header, or "" when it is absent or malformed."""
    parts = traceparent.split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and parts[1] != "0" * 32:
        return parts[1].lower()
    return ""

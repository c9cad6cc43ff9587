"""Spans in the worker: each run continues the trace stored with its event.

``automate.run`` (CONSUMER, a child of the emitting context stored with the event) spans a run;
``automate.step`` (INTERNAL, a child of the run) spans one attempt of one step, with the workflow,
version, step id, connector, attempt and outcome as attributes; a scheduled retry is an event on the run
span. Attribute values that come from workflow authors pass through ``safe_attributes`` (redacted); a
failure's message is redacted before it reaches the span (``record_failure``).
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from automate.observability.tracing import safe_attributes, sdk_installed

__all__ = [
    "parent_context",
    "record_failure",
    "retry_scheduled",
    "run_attributes",
    "step_attributes",
    "trace_id_hex",
    "tracer",
    "tracing_enabled",
]

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
    return sdk_installed()


def run_attributes(run_id: str, workflow: str, version: int, job_id: int) -> dict[str, Any]:
    return safe_attributes({
        "automate.run_id": run_id,
        "automate.workflow": workflow,
        "automate.workflow_version": version,
        "automate.job_id": job_id,
    })


def step_attributes(workflow: str, version: int, step_id: str, connector: str, attempt: int) -> dict[str, Any]:
    return safe_attributes({
        "automate.workflow": workflow,
        "automate.workflow_version": version,
        "automate.step": step_id,
        "automate.connector": connector,
        "automate.attempt": attempt,
    })


def retry_scheduled(step_id: str, attempt: int, delay: float, error: str) -> None:
    """A retry of ``step_id`` was scheduled: an event on the current (run) span. ``error`` is already
    redacted with the run's secrets; it is redacted again with the current rules (cheap, and safe)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event("automate.step.retry_scheduled", safe_attributes({
            "automate.step": step_id, "automate.attempt": attempt, "automate.delay_s": delay, "error": error,
        }))

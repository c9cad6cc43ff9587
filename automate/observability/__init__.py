"""Observability: OpenTelemetry tracing set-up, Prometheus metrics, ECS/simple logging, all redacted.

- :mod:`automate.observability.tracing`: ``configure_tracing()`` from ``OTEL_*``, ``shutdown_tracing()``,
  ``safe_attributes()``.
- :mod:`automate.observability.logs`: ``configure_logging(schema)``, the ``LOGGING`` dictConfig
  fragment, ``EcsFormatter`` / ``SimpleFormatter`` / ``RedactingFilter``.
- :mod:`automate.observability.metrics`: the web process's metrics and the database-read outbox gauges
  (the worker's are in :mod:`automate.aio.metrics`).
- :mod:`automate.observability.context`: the current run (ids, secrets) for log lines.
"""

from .context import bind_run, current_redactor
from .logs import LOGGING, RedactingFilter, configure_logging
from .tracing import configure_tracing, safe_attributes, shutdown_tracing

__all__ = [
    "LOGGING",
    "RedactingFilter",
    "bind_run",
    "configure_logging",
    "configure_tracing",
    "current_redactor",
    "safe_attributes",
    "shutdown_tracing",
]

"""OpenTelemetry SDK set-up from the standard ``OTEL_*`` variables, for the worker and the web process.

``configure_tracing()`` installs a ``TracerProvider`` whose spans are batched (``BatchSpanProcessor``,
tuned by ``OTEL_BSP_*``) and exported over OTLP: HTTP/protobuf by default, gRPC with
``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` (the ``otlp-grpc`` extra). The SDK itself reads the endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``..._TRACES_ENDPOINT``, headers, timeout), the sampler
(``OTEL_TRACES_SAMPLER`` / ``..._ARG``) and the resource (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``). It does nothing when no variable asks for tracing, or when a provider is
already installed (the application's own, or ``opentelemetry-instrument``'s).

``shutdown_tracing()`` flushes and stops the provider this module installed (the worker calls it on
its way out, so the last runs' spans are exported).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import trace

from automate.core.errors import AutomateError

__all__ = [
    "TracingConfigError",
    "configure_tracing",
    "safe_attributes",
    "sdk_installed",
    "shutdown_tracing",
    "tracing_requested",
]

_installed: Any = None  # the provider configure_tracing() installed, if any


class TracingConfigError(AutomateError, ValueError):
    """An ``OTEL_*`` variable asks for something this process cannot do; the message names it."""


# A provider named by this variable is loaded lazily by get_tracer_provider(); without it, nothing is
# installed until set_tracer_provider() sets the global, which is then read directly (get_tracer_provider
# looks the variable up in os.environ on every call while none is set: most of a microsecond).
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def sdk_installed() -> bool:
    """Whether an SDK tracer provider is installed. Without one, spans record nothing: the emitting and
    executing code skip them entirely (the no-tracing path costs this call, about 50 ns)."""
    provider = getattr(trace, "_TRACER_PROVIDER", None)
    if provider is None:
        if not _PROVIDER_FROM_ENV:
            return False
        provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _exporters(env: Mapping[str, str]) -> list[str]:
    raw = env.get("OTEL_TRACES_EXPORTER", "")
    return [e.strip().lower() for e in raw.split(",") if e.strip()]


def tracing_requested(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for tracing: an OTLP endpoint, or ``OTEL_TRACES_EXPORTER`` naming an
    exporter other than ``none`` (and ``OTEL_SDK_DISABLED`` not ``true``)."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _exporters(env)
    if exporters:
        return exporters != ["none"]
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _otlp_exporter(env: Mapping[str, str]) -> Any:
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    ).strip().lower()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcSpanExporter,
            )
        except ImportError:
            raise TracingConfigError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the OTLP gRPC exporter, which is not installed: "
                "pip install 'django-automate[otlp-grpc]' (or use the default, http/protobuf)"
            ) from None
        return GrpcSpanExporter()
    raise TracingConfigError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: use 'http/protobuf' (the default) or 'grpc'"
    )


def _span_exporters(env: Mapping[str, str]) -> list[Any]:
    names = _exporters(env) or ["otlp"]
    out: list[Any] = []
    for name in names:
        if name == "otlp":
            out.append(_otlp_exporter(env))
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            out.append(ConsoleSpanExporter())
        elif name != "none":
            raise TracingConfigError(
                f"OTEL_TRACES_EXPORTER names {name!r}; supported here: otlp, console, none"
            )
    return out


def configure_tracing(service_name: str = "django-automate", *, force: bool = False) -> bool:
    """Install an SDK tracer provider configured from ``OTEL_*``; return whether one was installed.

    ``service_name`` applies only when neither ``OTEL_SERVICE_NAME`` nor ``OTEL_RESOURCE_ATTRIBUTES``
    names the service. ``force`` installs one even when no variable asks for tracing (the endpoint then
    is the SDK's default, ``http://localhost:4318``). Raises :class:`TracingConfigError` naming the
    variable when the environment asks for something unavailable (gRPC without its extra, ...).
    """
    global _installed
    env = os.environ
    if sdk_installed() or not (force or tracing_requested(env)):
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporters = _span_exporters(env)  # raises before anything is installed
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": service_name}))
    provider = TracerProvider(resource=resource)  # reads OTEL_TRACES_SAMPLER / _ARG
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))  # reads OTEL_BSP_*
    trace.set_tracer_provider(provider)
    _installed = provider
    return True


def shutdown_tracing(timeout_s: float = 10.0) -> None:
    """Flush the spans still queued and stop the provider ``configure_tracing`` installed (if any)."""
    global _installed
    provider, _installed = _installed, None
    if provider is None:
        return
    provider.force_flush(int(timeout_s * 1000))
    provider.shutdown()


def safe_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Span attributes with every string value (and every string in a sequence) redacted, and ``None``
    values dropped. Use it wherever a user-influenced string becomes an attribute: a span processor cannot
    change a span once it has ended, so redaction happens where the attribute is made."""
    from .context import current_redactor

    redactor = current_redactor()
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        if isinstance(value, str):
            out[key] = redactor.redact_str(value)
        elif isinstance(value, bool | int | float):
            out[key] = value
        elif isinstance(value, Iterable):
            out[key] = [redactor.redact_str(v) if isinstance(v, str) else v for v in value]
        else:
            out[key] = redactor.redact_str(str(value))
    return out

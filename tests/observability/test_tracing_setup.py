"""Tracing set-up from OTEL_* variables: when it happens, and clear errors for what cannot be done."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from automate.observability.tracing import TracingConfigError, _span_exporters, safe_attributes, tracing_requested
from tests.aio.procs import ROOT


@pytest.mark.parametrize(
    ("env", "requested"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
        ({"OTEL_SERVICE_NAME": "shop"}, False),  # naming a service asks for nothing
    ],
)
def test_what_asks_for_tracing(env, requested):
    assert tracing_requested(env) is requested


def test_grpc_without_its_extra_says_how_to_get_it():
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    try:
        import opentelemetry.exporter.otlp.proto.grpc  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - the extra is installed: then it is used
        assert _span_exporters({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
        return
    with pytest.raises(TracingConfigError, match=r"pip install 'django-automate\[otlp-grpc\]'"):
        _span_exporters({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL='http/json' is not supported"),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "carrier-pigeon"}, "'carrier-pigeon' is not supported"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER names 'zipkin'"),
    ],
)
def test_unsupported_choices_are_named(env, message):
    with pytest.raises(TracingConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        _span_exporters(env)


def test_the_default_is_otlp_over_http_protobuf():
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    [exporter] = _span_exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"})
    assert isinstance(exporter, OTLPSpanExporter)
    exporter.shutdown()


def test_the_worker_refuses_to_start_with_an_impossible_exporter(pg_conninfo):
    env = {**os.environ, "AUTOMATE_TEST_WORKER_DATABASE_URL": pg_conninfo, "PYTHONPATH": str(ROOT),
           "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
    proc = subprocess.run([sys.executable, "-m", "automate.aio", "--settings", "tests.settings", "--drain"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "automate-aio-worker: OTEL_EXPORTER_OTLP_PROTOCOL='http/json' is not supported" in proc.stderr


def test_safe_attributes_redact_strings_and_drop_none():
    out = safe_attributes({
        "a": "token=abcdefghijklmnop", "b": 3, "c": None, "d": ["Bearer abcdefghijklmnop12345678", "ok"], "e": True,
    })
    assert out == {"a": "token=[REDACTED]", "b": 3, "d": ["Bearer [REDACTED]", "ok"], "e": True}

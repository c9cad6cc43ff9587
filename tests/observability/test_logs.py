"""Logging: ECS lines and their fields, the simple schema, one configuration for both processes, and
redaction of everything that reaches a log line, a span or a metric (a property test)."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest

from automate.aio import tracing as aio_tracing
from automate.core.redaction import Redactor
from automate.observability import logs
from automate.observability.context import bind_run
from automate.observability.metrics import event_emitted, event_type_label
from automate.observability.tracing import safe_attributes

log = logging.getLogger("automate.tests.observability")


class _Secrets:
    def __init__(self, *values: str) -> None:
        self.redactor = Redactor().with_secrets(values)


@pytest.fixture
def lines(capsys) -> Iterator[callable]:
    """Configure logging as the worker does (``configure_logging`` on the root, to stdout); give back a
    reader of the lines written since."""
    previous_level = logging.getLogger().level

    def configure(schema: str = "ecs") -> None:
        logs.configure_logging(schema, level="DEBUG", logger="", stream="stdout")

    configure()
    capsys.readouterr()

    def read() -> list[str]:
        return [line for line in capsys.readouterr().out.splitlines() if line]

    read.configure = configure  # type: ignore[attr-defined]
    yield read
    root = logging.getLogger()
    for h in [h for h in root.handlers if h.__dict__.get("_automate")]:
        root.removeHandler(h)
    root.setLevel(previous_level)
    logs.configure_django_logging()  # as AutomateConfig.ready left it


def test_an_ecs_line_has_trace_run_step_and_action(lines):
    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("automate.run") as span:
        log.info("automate.step.retry_scheduled", extra={"run_id": "r-1", "step": "fetch", "attempt": 2, "delay_s": 0.5})
    [line] = lines()
    record = json.loads(line)
    ctx = span.get_span_context()
    assert record["message"] == "automate.step.retry_scheduled"
    assert record["event"]["action"] == "automate.step.retry_scheduled"
    assert record["trace"]["id"] == format(ctx.trace_id, "032x")
    assert record["span"]["id"] == format(ctx.span_id, "016x")
    assert record["automate"] == {"run_id": "r-1", "step": "fetch", "attempt": 2, "delay_s": 0.5}
    assert record["log.level"] == "info" and record["log"]["logger"] == "automate.tests.observability"
    assert record["ecs.version"] and record["@timestamp"].endswith("Z")
    assert "original" not in record["log"]  # the message once


def test_outside_a_span_the_run_gives_the_trace_id(lines):
    def in_run() -> None:
        bind_run("0b2c3d4e-1111-2222-3333-444455556666", "4bf92f3577b34da6a3ce929d0e0e4736", None)
        log.warning("automate.worker.final_flush_failed: the jobs' leases will expire", extra={"error": "gone"})

    contextvars.copy_context().run(in_run)
    log.info("no run here")
    first, second = (json.loads(line) for line in lines())
    assert first["trace"]["id"] == "4bf92f3577b34da6a3ce929d0e0e4736" and "span" not in first
    assert first["automate"] == {"run_id": "0b2c3d4e-1111-2222-3333-444455556666", "error": "gone"}
    assert first["event"]["action"] == "automate.worker.final_flush_failed"
    assert "trace" not in second and "event" not in second and "automate" not in second


def test_an_exception_is_logged_with_its_type_message_and_trace_redacted(lines):
    try:
        raise ValueError("upstream said password=hunter2hunter2 and token sk-live-4f9a1c0e7b2d5a8e3f6c9b0a")
    except ValueError:
        log.exception("automate.job.crashed", extra={"job_id": 7})
    [line] = lines()
    record = json.loads(line)
    assert record["error"]["type"] == "ValueError"
    assert "upstream said password=" in record["error"]["message"]
    assert "hunter2hunter2" not in line and "sk-live-4f9a1c0e7b2d5a8e3f6c9b0a" not in line
    assert "test_logs.py" in record["error"]["stack_trace"]
    assert record["automate"] == {"job_id": 7} and record["log.level"] == "error"


def test_the_simple_schema_is_one_readable_line(lines):
    lines.configure("simple")
    log.info("automate.step.waiting", extra={"run_id": "r-2", "step": "wait", "delay_s": 3})
    [line] = lines()
    assert line.endswith(" INFO automate.tests.observability automate.step.waiting run_id=r-2 step=wait delay_s=3")
    with pytest.raises(ValueError, match="must be 'ecs' or 'simple'"):
        lines.configure("xml")


def test_a_bad_format_string_does_not_stop_the_filter():
    record = logging.LogRecord("automate.x", logging.INFO, __file__, 1, "%d items, api_key=%s", ("x", "k" * 20), None)
    assert logs.RedactingFilter().filter(record)
    assert record.getMessage() == "%d items, api_key=[REDACTED]"  # the template, redacted; no arguments


def test_the_filter_redacts_records_for_your_own_handlers():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.RedactingFilter())
    handler.setFormatter(logging.Formatter("%(message)s %(detail)s"))
    other = logging.getLogger("tests.own")
    other.addHandler(handler)
    other.propagate = False
    try:
        try:
            raise RuntimeError("Bearer abcdefghijklmnop1234567890")
        except RuntimeError:
            other.error("sending %s", "password=swordfish123", extra={"detail": {"token": "t0k3n-value-123"}},
                        exc_info=True)
    finally:
        other.removeHandler(handler)
    out = stream.getvalue()
    assert "sending" in out and "RuntimeError" in out
    for secret in ("swordfish123", "t0k3n-value-123", "abcdefghijklmnop1234567890"):
        assert secret not in out


def _set_logging(monkeypatch, value):
    """settings.LOGGING as a settings file would have it. Not through pytest-django's ``settings``: on
    Django 6 its setting_changed signal applies the new LOGGING at once, which is not what is tested."""
    from django.conf import settings as django_settings

    monkeypatch.setattr(django_settings, "LOGGING", value, raising=False)


def test_a_users_own_logging_for_automate_is_left_alone(monkeypatch):
    mine = logging.NullHandler()
    automate_logger = logging.getLogger("automate")
    before = list(automate_logger.handlers)
    _set_logging(monkeypatch, {"version": 1, "loggers": {"automate": {"handlers": [], "level": "DEBUG"}}})
    automate_logger.addHandler(mine)
    try:
        assert logs.configure_django_logging() is None
        assert automate_logger.handlers == [*before, mine]
    finally:
        automate_logger.removeHandler(mine)


def test_without_a_users_logging_the_automate_logger_gets_one_handler(monkeypatch):
    _set_logging(monkeypatch, {"version": 1, "root": {"handlers": ["console"]},
                               "handlers": {"console": {"class": "logging.StreamHandler"}}})
    try:
        handler = logs.configure_django_logging()
        automate_logger = logging.getLogger("automate")
        assert [h for h in automate_logger.handlers if h.__dict__.get("_automate")] == [handler]
        assert automate_logger.propagate is False  # the root has handlers: no line twice
        assert isinstance(handler.formatter, logs.EcsFormatter)
    finally:
        monkeypatch.undo()
        logs.configure_django_logging()
    assert logging.getLogger("automate").propagate is True


# -- nothing secret anywhere: a property test --------------------------------------------------------------
_alnum = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=12, max_size=24)
# Secrets the configured rules find without knowing them, and run secrets known only by value.
_patterned = st.one_of(
    _alnum.map(lambda s: ("sk-live-" + s, "sk-live-" + s)),
    _alnum.map(lambda s: ("password=" + s, s)),
    _alnum.map(lambda s: ("Authorization: Bearer " + s + "9", s + "9")),
)
_where = st.sampled_from(["message", "argument", "extra", "nested_extra", "exception", "exception_arg"])


def _log_with(where: str, text: str) -> None:
    if where == "message":
        log.warning(f"automate.step.failed: got {text} back")
    elif where == "argument":
        log.warning("automate.step.failed: got %s back", text)
    elif where == "extra":
        log.warning("automate.step.failed", extra={"error": text})
    elif where == "nested_extra":
        log.warning("automate.step.failed", extra={"response": {"body": [text]}})
    elif where == "exception":
        try:
            raise ValueError(f"step said {text}")
        except ValueError:
            log.exception("automate.job.crashed")
    else:
        try:
            raise KeyError(text)
        except KeyError:
            log.error("automate.job.crashed", exc_info=True)


@settings(max_examples=25)
@given(planted=_patterned, run_secret=_alnum, where=_where, schema=st.sampled_from(["ecs", "simple"]))
def test_no_planted_secret_reaches_a_log_line_a_span_or_a_metric(planted, run_secret, where, schema):
    text, secret = planted
    buffer = io.StringIO()
    handler = logs.configure_logging(schema, level="DEBUG", logger="automate.tests", stream="stdout")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def in_run() -> None:
        bind_run("run-1", "", _Secrets(run_secret))  # as the executor binds a run and its secrets
        _log_with(where, text)
        _log_with(where, f"resolved {run_secret} in the run")
        with provider.get_tracer("t").start_as_current_span(
            "automate.step", attributes=safe_attributes({"automate.step": f"{text}-{run_secret}"})
        ) as span:
            aio_tracing.retry_scheduled(f"{text}", 1, 0.1, f"{run_secret} failed")
            aio_tracing.record_failure(span, logs.current_redactor().redact_str(f"{text} {run_secret}"))
        if re.fullmatch(r"[A-Za-z0-9_\-]+", text):  # a valid event type segment: it must not become a label
            event_emitted(f"{text}.created")

    import sys

    saved = sys.stdout
    sys.stdout = buffer
    try:
        contextvars.copy_context().run(in_run)
    finally:
        sys.stdout = saved
        logging.getLogger("automate.tests").removeHandler(handler)
        logs.configure_django_logging()
    out = buffer.getvalue()
    assert out.count("automate.") >= 2, out
    texts = [out, generate_latest().decode()]
    for s in exporter.get_finished_spans():
        texts += [s.name, s.status.description or "", *map(str, s.attributes.values())]
        for ev in s.events:
            texts += [ev.name, *map(str, ev.attributes.values())]
    for t in texts:
        assert secret not in t, (where, schema, t)
    for t in texts[:1] + texts[2:]:  # the run's secret: in no line and no span
        assert run_secret not in t, (where, schema, t)
    assert event_type_label("sk-live-4f9a1c0e7b2d5a8e3f6c9b0a.created") == "other"

"""Log records as ECS JSON lines (``LOGGING_SCHEMA = "ecs"``) or readable lines (``"simple"``), redacted.

Both formatters redact everything they write (message, arguments, extras, exception message and
traceback) with :func:`automate.observability.context.current_redactor`: the settings' rules, plus the
values of the secrets the current run resolved. ECS lines carry ``trace.id`` / ``span.id`` (the current
span's, else the current run's stored trace id), ``event.action`` (the stable event name the message
starts with, such as ``automate.step.retry_scheduled``) and the record's extras under ``automate.*``
(``automate.run_id``, ``automate.step``, ...).

One way to configure, for the worker and the web process alike: :func:`configure_logging`, or the
dictConfig fragment :data:`LOGGING` to merge into your own ``settings.LOGGING``. :class:`RedactingFilter`
redacts records for handlers of your own.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from typing import Any, Literal

import ecs_logging
from opentelemetry import trace

from .context import current_redactor, current_run

__all__ = [
    "LOGGING",
    "EcsFormatter",
    "RedactingFilter",
    "SimpleFormatter",
    "configure_django_logging",
    "configure_logging",
    "event_action",
]

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_ACTION_RX = re.compile(r"automate(?:\.[A-Za-z0-9_]+)+(?=$|[:\s])")
_ACTION_KEY = "event_action"  # extra={"event_action": "..."} names the action explicitly


def event_action(record: logging.LogRecord) -> str | None:
    """The record's stable event name: ``extra={"event_action": ...}``, else the dotted ``automate.*``
    name its message starts with (``"automate.step.retry_scheduled"``), else None."""
    explicit = record.__dict__.get(_ACTION_KEY)
    if isinstance(explicit, str) and explicit:
        return explicit
    msg = record.msg
    if isinstance(msg, str):
        m = _ACTION_RX.match(msg)
        if m:
            return m.group(0)
    return None


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and k != _ACTION_KEY}


def _trace_ids() -> tuple[str, str]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
    run = current_run()
    return (run.trace_id if run is not None else ""), ""


class EcsFormatter(ecs_logging.StdlibFormatter):
    """``ecs_logging.StdlibFormatter`` with trace ids, ``event.action``, extras under ``automate.*``, and
    every string in the line redacted before it is encoded."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("exclude_fields", ["log.original"])  # the message, a second time
        super().__init__(**kwargs)

    def format_to_ecs(self, record: logging.LogRecord) -> dict[str, Any]:
        # A copy whose extras are namespaced: a bare extra such as "error" would collide with ECS's own
        # "error" object; a dotted one ("http.request.method") is taken as an ECS field as it is.
        clone = logging.makeLogRecord({k: v for k, v in record.__dict__.items() if k in _STANDARD})
        for key, value in _extras(record).items():
            clone.__dict__[key if "." in key else f"automate.{key}"] = value
        trace_id, span_id = _trace_ids()
        if trace_id:
            clone.__dict__.setdefault("trace.id", trace_id)
        if span_id:
            clone.__dict__.setdefault("span.id", span_id)
        run = current_run()
        if run is not None:
            clone.__dict__.setdefault("automate.run_id", run.run_id)
        action = event_action(record)
        if action:
            clone.__dict__["event.action"] = action
        result = super().format_to_ecs(clone)
        return current_redactor().redact(result)


class SimpleFormatter(logging.Formatter):
    """``time LEVEL logger message key=value ...`` and the traceback, redacted as a whole."""

    def __init__(self, datefmt: str | None = "%H:%M:%S") -> None:
        super().__init__(datefmt=datefmt)

    def format(self, record: logging.LogRecord) -> str:
        parts = [self.formatTime(record, self.datefmt), record.levelname, record.name, record.getMessage()]
        run = current_run()
        extras = _extras(record)
        if run is not None and "run_id" not in extras:
            extras["run_id"] = run.run_id
        parts.extend(f"{k}={v}" for k, v in extras.items())
        text = " ".join(str(p) for p in parts)
        if record.exc_info:  # formatted here, not cached on the record unredacted for other handlers
            text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return current_redactor().redact_str(text)


class RedactingFilter(logging.Filter):
    """For handlers of your own: redacts a record in place (message and arguments, extras, exception
    text) so that any formatter writes only redacted text. The exception is kept as redacted text
    (``exc_text``) and ``exc_info`` is cleared, so no formatter can reach the raw exception."""

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = current_redactor()
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the template, never crash the caller
            message = str(record.msg)
        record.msg, record.args = redactor.redact_str(message), None
        for key, value in _extras(record).items():
            record.__dict__[key] = redactor.redact(value)
        if record.exc_info:
            record.exc_text = redactor.redact_str("".join(traceback.format_exception(*record.exc_info)).rstrip())
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redactor.redact_str(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor.redact_str(record.stack_info)
        return True


class _StdStream(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` / ``sys.stderr`` is at the time of each record."""

    def __init__(self, which: Literal["stdout", "stderr"]) -> None:
        super().__init__()
        self._which = which

    @property
    def stream(self) -> Any:
        return getattr(sys, self._which)

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _formatter(schema: str) -> logging.Formatter:
    if schema == "ecs":
        return EcsFormatter()
    if schema == "simple":
        return SimpleFormatter()
    raise ValueError(f"DJANGO_AUTOMATE.LOGGING_SCHEMA must be 'ecs' or 'simple', got {schema!r}")


def configure_logging(
    schema: str | None = None,
    *,
    level: int | str = "INFO",
    logger: str = "automate",
    stream: Literal["stdout", "stderr"] = "stderr",
    propagate: bool = True,
) -> logging.Handler:
    """Send ``logger``'s records (``""``: every record) through one handler with the schema's formatter
    (``schema`` defaults to ``DJANGO_AUTOMATE.LOGGING_SCHEMA``). Calling it again replaces the handler it
    installed before, wherever it was, and leaves every other handler alone."""
    if schema is None:
        from automate.conf import get_settings

        schema = get_settings().LOGGING_SCHEMA
    handler = _StdStream(stream)
    handler.setFormatter(_formatter(schema))
    handler.__dict__["_automate"] = True
    for name in ("", "automate"):
        existing = logging.getLogger(name)
        for h in [h for h in existing.handlers if h.__dict__.get("_automate")]:
            existing.removeHandler(h)
    logging.getLogger("automate").propagate = True
    target = logging.getLogger(logger)
    target.addHandler(handler)
    target.setLevel(level.upper() if isinstance(level, str) else level)
    target.propagate = propagate
    return handler


def configure_django_logging() -> logging.Handler | None:
    """The web process's set-up (``AutomateConfig.ready``): the ``automate`` logger through
    :func:`configure_logging`, unless ``settings.LOGGING`` configures that logger itself (then it is
    left exactly as configured) or ``LOGGING_CONFIG`` is None. When ``LOGGING`` gives the root logger
    handlers, ``automate`` stops propagating to them, so no line is written twice."""
    from django.conf import settings

    if getattr(settings, "LOGGING_CONFIG", "logging.config.dictConfig") is None:
        return None
    config = getattr(settings, "LOGGING", None) or {}
    loggers = config.get("loggers") or {}
    if "automate" in loggers:
        return None
    root = config.get("root") or loggers.get("") or {}
    from django.core.exceptions import ImproperlyConfigured

    from automate.conf import get_settings

    try:
        schema = get_settings().LOGGING_SCHEMA
    except ImproperlyConfigured:  # reported by the system check and at first use; log safely meanwhile
        schema = "ecs"
    return configure_logging(schema, level="INFO", propagate=not root.get("handlers"))


#: A ``logging.config.dictConfig`` fragment to merge into ``settings.LOGGING`` (see the README).
LOGGING: dict[str, Any] = {
    "formatters": {
        "automate_ecs": {"()": "automate.observability.logs.EcsFormatter"},
        "automate_simple": {"()": "automate.observability.logs.SimpleFormatter"},
    },
    "filters": {"automate_redact": {"()": "automate.observability.logs.RedactingFilter"}},
    "handlers": {
        "automate": {"class": "logging.StreamHandler", "formatter": "automate_ecs", "stream": "ext://sys.stderr"},
    },
    "loggers": {"automate": {"handlers": ["automate"], "level": "INFO", "propagate": False}},
}

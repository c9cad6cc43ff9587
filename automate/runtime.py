"""The public runtime API: ``emit_event`` / ``aemit_event`` (and, with the worker, ``run_workflow``)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson
import psycopg
from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, connections

from . import queries, synchronous
from .conf import get_settings
from .core.errors import AutomateError
from .core.jsonsafe import JSONValueError, check_json
from .notify import notify_on_commit
from .observability.tracing import sdk_installed
from .tracing import current_trace_context

__all__ = [
    "InvalidEventError",
    "WorkflowNotFound",
    "aemit_event",
    "arun_workflow",
    "emit_event",
    "run_workflow",
]

_TYPE_RE = re.compile(r"[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*")
_MAX_TYPE_LEN = 200
_MAX_SOURCE_LEN = 200
_MAX_DEDUPE_LEN = 255


class InvalidEventError(AutomateError, ValueError):
    """An event was refused before anything was stored; the message names the argument."""


class WorkflowNotFound(AutomateError, LookupError):
    """``run_workflow`` named a workflow that does not exist, is disabled, or has no version."""


def _encode_payload(payload: Any, limit: int) -> bytes:
    """The payload as JSONB text, or ``InvalidEventError`` naming the first value JSONB cannot hold.

    orjson alone would write NaN and Infinity as ``null``: the payload is checked first, so a value is
    refused (``payload.v: NaN is not a JSON number``) rather than stored as something else.
    """
    if not isinstance(payload, dict):
        raise InvalidEventError(f"payload must be a dict, got {type(payload).__name__}")
    try:
        check_json(payload, path="payload")
        data = orjson.dumps(payload)
    except JSONValueError as exc:
        raise InvalidEventError(str(exc)) from None
    except TypeError as exc:  # what check_json lets through the encoder still refuses
        raise InvalidEventError(f"payload is not JSON-serialisable: {exc}") from None
    if len(data) > limit:
        raise InvalidEventError(
            f"payload is {len(data)} bytes encoded; the limit is {limit} "
            "(DJANGO_AUTOMATE.EVENTS.max_payload_bytes)"
        )
    return data


def _check_type(type: str) -> None:
    if not isinstance(type, str) or not type:
        raise InvalidEventError("type must be a non-empty dotted name such as 'order.created'")
    if len(type) > _MAX_TYPE_LEN or not _TYPE_RE.fullmatch(type):
        raise InvalidEventError(
            f"type {type[:80]!r} is not a dotted name of letters, digits, '_' and '-' "
            f"(at most {_MAX_TYPE_LEN} characters), such as 'order.created'"
        )


def _check_str(name: str, value: str | None, limit: int) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidEventError(f"{name} must be a non-empty string of at most {limit} characters")


def _execute_emit(
    raw: psycopg.Connection[Any], params: dict[str, Any], dedupe_key: str | None, prepared: bool
) -> tuple[Any, bool] | None:
    """Run EMIT_EVENT on Django's psycopg connection; ``(event id, inserted?)``.

    EMIT_EVENT is one statement, atomic on its own: in autocommit mode it needs no BEGIN/COMMIT round
    trips, and inside the caller's transaction it joins it. It runs as a prepared statement on a
    server-side binding cursor: through Django's defaults (client-side binding, ``prepare_threshold``
    None) the server parsed and planned the CTE on every emit, which took longer than the insert itself
    (benchmarks/bench_emit.py). Only this statement is prepared; Django's own queries are unaffected.
    """
    threshold = raw.prepare_threshold
    if prepared and threshold is None:
        raw.prepare_threshold = 0
    try:
        with psycopg.Cursor(raw) as cursor:
            cursor.execute(queries.EMIT_EVENT, params)
            row = cursor.fetchone()
            if row is not None:
                return row[0], True
            cursor.execute(queries.EVENT_ID_BY_DEDUPE_KEY, {"dedupe_key": dedupe_key})
            existing = cursor.fetchone()
            return (existing[0], False) if existing is not None else None
    finally:
        raw.prepare_threshold = threshold


def emit_event(
    type: str,
    payload: dict[str, Any],
    dedupe_key: str | None = None,
    *,
    source: str = "",
    using: str = DEFAULT_DB_ALIAS,
) -> str:
    """Ingest an event into the outbox and return its id (a UUID string).

    The Event and its OutboxJob are written in the caller's transaction: a rolled-back request emits
    nothing. A repeated ``dedupe_key`` returns the first event's id and stores nothing new, also under
    concurrency. The worker is woken by a NOTIFY sent after the commit (see ``automate.notify``).
    """
    settings = get_settings()
    _check_type(type)
    _check_str("dedupe_key", dedupe_key, _MAX_DEDUPE_LEN)
    if source:
        _check_str("source", source, _MAX_SOURCE_LEN)
    data = _encode_payload(payload, settings.EVENTS.max_payload_bytes)
    if sdk_installed():  # without an SDK provider, no span: this check is all that tracing costs here
        event_id, stored = _emit_traced(type, data, dedupe_key, source, using, settings)
    else:
        event_id, stored = _emit(type, data, dedupe_key, source, using, settings)
    if stored and settings.METRICS_EXPORT:
        from .observability.metrics import event_emitted

        event_emitted(type)
    return event_id


def _emit_traced(
    type: str, data: bytes, dedupe_key: str | None, source: str, using: str, settings: Any
) -> tuple[str, bool]:
    """``_emit`` inside an ``automate.emit`` span (PRODUCER): the stored traceparent is this span's, so
    the worker's run is its child. Exceptions are not recorded by OpenTelemetry (a database error's
    message can quote stored values): the span's status names the exception type only."""
    from opentelemetry import trace

    from .observability.tracing import safe_attributes

    tracer = trace.get_tracer("automate")
    attributes = safe_attributes({"automate.event_type": type, "automate.source": source or None})
    with tracer.start_as_current_span(
        "automate.emit", kind=trace.SpanKind.PRODUCER, attributes=attributes,
        record_exception=False, set_status_on_exception=False,
    ) as span:
        try:
            event_id, stored = _emit(type, data, dedupe_key, source, using, settings)
        except Exception as exc:
            span.set_status(trace.Status(trace.StatusCode.ERROR, exc.__class__.__name__))
            raise
        span.set_attributes({"automate.event_id": event_id, "automate.deduplicated": not stored})
    return event_id, stored


def _emit(
    type: str, data: bytes, dedupe_key: str | None, source: str, using: str, settings: Any
) -> tuple[str, bool]:
    """Insert the event and its job: ``(event id, stored?)`` (the first event's id for a repeated key)."""
    traceparent, tracestate = current_trace_context()
    params: dict[str, Any] = {
        "id": uuid.uuid4(),
        "type": type,
        "payload": data.decode(),
        "source": source,
        "dedupe_key": dedupe_key,
        "traceparent": traceparent,
        "tracestate": tracestate,
        "max_attempts": settings.EXECUTION.max_retries + 1,
    }
    conn = connections[using]
    conn.ensure_connection()
    with conn.wrap_database_errors:
        row = _execute_emit(conn.connection, params, dedupe_key, settings.EVENTS.prepared_statements)
    if row is None:
        raise InvalidEventError(f"dedupe_key {dedupe_key!r} conflicts with an event being deleted")
    if not row[1]:  # dedupe_key seen before: nothing was written
        return str(row[0]), False
    if synchronous.enabled():  # WORKER_MODE "synchronous": the workflows run when the caller commits
        synchronous.run_on_commit(using, event_ids=[str(row[0])])
    elif settings.EVENTS.notify == "commit":
        notify_on_commit(using)
    return str(row[0]), True


async def aemit_event(
    type: str,
    payload: dict[str, Any],
    dedupe_key: str | None = None,
    *,
    source: str = "",
    using: str = DEFAULT_DB_ALIAS,
) -> str:
    """``emit_event`` for async views: runs in Django's sync thread, never blocking the event loop.

    The OpenTelemetry context is carried over because ``sync_to_async`` copies contextvars.
    """
    return await sync_to_async(emit_event, thread_sensitive=True)(
        type, payload, dedupe_key, source=source, using=using
    )


def run_workflow(workflow_slug: str, payload: dict[str, Any], *, using: str = DEFAULT_DB_ALIAS) -> str:
    """Start a run of the workflow's current version, bypassing the rules; return the ExecutionRun id.

    The run's input is recorded as an event of type ``automate.run_workflow`` (source
    ``run_workflow:<slug>``), so the run has the same context (``event.payload``) as a matched one.
    """
    from .models import Workflow, WorkflowVersion

    settings = get_settings()
    data = _encode_payload(payload, settings.EVENTS.max_payload_bytes)
    workflow = Workflow.objects.using(using).filter(slug=workflow_slug).first()
    if workflow is None:
        raise WorkflowNotFound(f"no workflow with slug {workflow_slug!r}")
    if not workflow.enabled:
        raise WorkflowNotFound(f"workflow {workflow_slug!r} is disabled")
    version = (
        WorkflowVersion.objects.using(using).filter(workflow=workflow).order_by("-version_num").only("id").first()
    )
    if version is None:
        raise WorkflowNotFound(f"workflow {workflow_slug!r} has no version yet")
    traceparent, tracestate = current_trace_context()
    params: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "run_id": uuid.uuid4(),
        "version_id": version.pk,
        "type": "automate.run_workflow",
        "payload": data.decode(),
        "source": f"run_workflow:{workflow_slug}"[:_MAX_SOURCE_LEN],
        "traceparent": traceparent,
        "tracestate": tracestate,
        "max_attempts": settings.EXECUTION.max_retries + 1,
    }
    with connections[using].cursor() as cursor:  # one statement: atomic without BEGIN/COMMIT
        cursor.execute(queries.START_RUN, params)
        row = cursor.fetchone()
    if synchronous.enabled():  # WORKER_MODE "synchronous": the run runs when the caller commits
        synchronous.run_on_commit(using, event_ids=[str(params["event_id"])])
    elif settings.EVENTS.notify == "commit":
        notify_on_commit(using)
    assert row is not None  # the statement inserts unconditionally
    return str(row[0])


async def arun_workflow(workflow_slug: str, payload: dict[str, Any], *, using: str = DEFAULT_DB_ALIAS) -> str:
    """``run_workflow`` for async code."""
    return await sync_to_async(run_workflow, thread_sensitive=True)(workflow_slug, payload, using=using)

"""The public runtime API: ``emit_event`` / ``aemit_event`` (and, with the worker, ``run_workflow``)."""

from __future__ import annotations

import re
import uuid
import weakref
import zlib
from typing import Any

import orjson
import psycopg
from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, connections
from psycopg import pq

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


# EMIT_EVENT for libpq itself: its placeholders as $1..$8, in this order (see _execute_emit).
_EMIT_PARAMS = ("id", "type", "payload", "source", "dedupe_key", "traceparent", "tracestate", "max_attempts")


def _positional(sql: str, names: tuple[str, ...]) -> bytes:
    for i, name in enumerate(names, 1):
        sql = sql.replace(f"%({name})s", f"${i}")
    if "%" in sql:
        raise AssertionError("EMIT_EVENT has a placeholder or a % that _EMIT_PARAMS does not cover")
    return sql.encode()


_EMIT_SQL = _positional(queries.EMIT_EVENT, _EMIT_PARAMS)
_EMIT_NAME = b"automate_emit_%x" % (zlib.crc32(_EMIT_SQL),)  # a new text is a new statement
# The psycopg connections (Django's, one per thread) on which _EMIT_NAME is prepared.
_prepared_on: weakref.WeakKeyDictionary[psycopg.Connection[Any], bool] = weakref.WeakKeyDictionary()


def _execute_emit(
    raw: psycopg.Connection[Any], params: dict[str, Any], dedupe_key: str | None, prepared: bool
) -> tuple[Any, bool] | None:
    """Run EMIT_EVENT on Django's psycopg connection; ``(event id, inserted?)``.

    EMIT_EVENT is one statement, atomic on its own: in autocommit mode it needs no BEGIN/COMMIT round
    trips, and inside the caller's transaction it joins it. It runs as a prepared statement: through
    Django's defaults (client-side binding, ``prepare_threshold`` None) the server parsed and planned
    the CTE on every emit, which took longer than the insert itself (benchmarks/bench_emit.py).

    The statement goes to libpq directly (``PQexecPrepared``, parameters as text, typed by the
    statement): a psycopg cursor's execute cost more Python time than the rest of emit_event, and with
    16 emitting processes on 2 cores that CPU was most of the gap to a raw psycopg INSERT. It is
    prepared under its own name once per connection. libpq knows nothing of psycopg's state, so:

    * psycopg starts a transaction with the first statement after Django turned autocommit off: when
      the emit is that statement, it sends the BEGIN psycopg would (Django's isolation level included);
    * psycopg deallocates every statement (DEALLOCATE ALL, after a rollback) once it has prepared one of
      its own, which it does only with a ``prepare_threshold``: with one, and in the other unusual cases
      (a pipeline, an encoding other than UTF8), the psycopg cursor runs the statement, and this code
      never makes psycopg prepare anything when Django's connection has none. (A connection whose
      ``prepare_threshold`` is set and later unset keeps psycopg's statements: a DEALLOCATE ALL then
      fails the next emit inside a transaction with "prepared statement does not exist"; outside one
      the statement is prepared again.)
    """
    pgconn = raw.pgconn
    if raw.prepare_threshold is not None:
        return _execute_emit_psycopg(raw, params, dedupe_key, prepare=prepared)
    if pgconn.pipeline_status or pgconn.parameter_status(b"client_encoding") != b"UTF8":
        return _execute_emit_psycopg(raw, params, dedupe_key, prepare=False)
    values = [
        str(params["id"]).encode(),
        params["type"].encode(),
        params["payload"].encode(),
        params["source"].encode(),
        None if dedupe_key is None else dedupe_key.encode(),
        params["traceparent"].encode(),
        params["tracestate"].encode(),
        b"%d" % params["max_attempts"],
    ]
    with raw.lock:
        outside = pgconn.transaction_status == pq.TransactionStatus.IDLE
        if outside and not raw.autocommit:
            _check(pgconn.exec_(_begin_command(raw)))
            outside = False
        if not prepared:
            result = pgconn.exec_params(_EMIT_SQL, values)
        else:
            if raw not in _prepared_on:
                _check(pgconn.prepare(_EMIT_NAME, _EMIT_SQL))
                _prepared_on[raw] = True
            result = pgconn.exec_prepared(_EMIT_NAME, values)
            if result.error_field(pq.DiagnosticField.SQLSTATE) == b"26000":
                # Someone ran DEALLOCATE ALL or DISCARD ALL on this session. Outside a transaction
                # nothing was aborted: prepare again and retry; inside one the caller's transaction
                # has failed, as it would for any error.
                _prepared_on.pop(raw, None)
                if outside:
                    _check(pgconn.prepare(_EMIT_NAME, _EMIT_SQL))
                    _prepared_on[raw] = True
                    result = pgconn.exec_prepared(_EMIT_NAME, values)
    _check(result)
    if result.ntuples:
        value = result.get_value(0, 0)
        assert value is not None  # event_id of the job just inserted
        return value.decode(), True
    with psycopg.Cursor(raw) as cursor:  # the key was taken: the first event's id (rare)
        cursor.execute(queries.EVENT_ID_BY_DEDUPE_KEY, {"dedupe_key": dedupe_key}, prepare=False)
        existing = cursor.fetchone()
    return (existing[0], False) if existing is not None else None


def _begin_command(raw: psycopg.Connection[Any]) -> bytes:
    """The BEGIN psycopg sends to start a transaction (its own builder is private)."""
    parts = [b"BEGIN"]
    if raw.isolation_level is not None:
        level = psycopg.IsolationLevel(raw.isolation_level).name.replace("_", " ")
        parts += [b"ISOLATION LEVEL", level.encode()]
    if raw.read_only is not None:
        parts.append(b"READ ONLY" if raw.read_only else b"READ WRITE")
    if raw.deferrable is not None:
        parts.append(b"DEFERRABLE" if raw.deferrable else b"NOT DEFERRABLE")
    return b" ".join(parts)


def _check(result: pq.abc.PGresult) -> None:
    if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
        raise psycopg.errors.error_from_result(result, encoding="utf-8")


def _execute_emit_psycopg(
    raw: psycopg.Connection[Any], params: dict[str, Any], dedupe_key: str | None, prepare: bool
) -> tuple[Any, bool] | None:
    """EMIT_EVENT through a psycopg cursor (prepared by psycopg's own cache when ``prepare``)."""
    with psycopg.Cursor(raw) as cursor:
        cursor.execute(queries.EMIT_EVENT, params, prepare=prepare)
        row = cursor.fetchone()
        if row is not None:
            return row[0], True
        cursor.execute(queries.EVENT_ID_BY_DEDUPE_KEY, {"dedupe_key": dedupe_key}, prepare=False)
        existing = cursor.fetchone()
        return (existing[0], False) if existing is not None else None


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

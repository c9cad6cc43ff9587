"""``AutomateTaskBackend``: Django's Tasks API on the outbox, run by the same ``automate-aio-worker``.

    TASKS = {"default": {"BACKEND": "automate.tasks.AutomateTaskBackend"}}

``enqueue`` writes one OutboxJob of kind ``"task"`` in the caller's transaction (a rolled-back request
enqueues nothing) and wakes the workers with the NOTIFY sent after the commit, like ``emit_event``. The
payload holds the function's dotted path, its arguments, the queue and the backend alias; the job's
``priority`` is the task's and its ``available_at`` the task's ``run_after``. The worker runs async
functions on its event loop and sync ones in its thread pool (``automate.aio.tasks``), and stores the
outcome in the job's row, as ``payload.result`` (status, return value, errors with redacted tracebacks,
worker ids) in the same group commit that completes the job; ``get_result`` reads it back.

A job's ``func`` must name a ``@task`` (a Task instance at that path): an outbox row cannot make the
worker call any other importable function. Arguments and return values are JSON (``normalize_json``).
"""

from __future__ import annotations

from typing import Any

import orjson
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils.module_loading import import_string

from automate import queries, synchronous
from automate.conf import get_settings
from automate.core.errors import AutomateError
from automate.core.jsonsafe import JSONValueError, check_json
from automate.notify import notify_on_commit

from . import compat
from .compat import (
    BaseTaskBackend,
    InvalidTaskError,
    Task,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
)

__all__ = ["AutomateTaskBackend", "TaskJobFailed", "load_task"]

_STATUS = {
    "PENDING": TaskResultStatus.READY,
    "CLAIMED": TaskResultStatus.RUNNING,
    "COMPLETED": TaskResultStatus.SUCCESSFUL,
    "FAILED": TaskResultStatus.FAILED,
}


class TaskJobFailed(AutomateError):
    """The error class reported for a task job that failed outside the task's own code (its worker died
    and it ran out of attempts, or it was never runnable); the traceback is the job's ``last_error``."""


def load_task(path: str) -> Any:
    """The Task at ``path``; ``AutomateError`` when there is none (not importable, or not a ``@task``)."""
    try:
        target = import_string(path)
    except ImportError as exc:
        raise AutomateError(f"task {path!r} cannot be imported: {exc}") from None
    if not isinstance(target, compat.TASK_CLASSES):
        raise AutomateError(f"{path!r} is not a task (decorate the function with @task)")
    return target


class AutomateTaskBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.using = self.options.get("DATABASE", DEFAULT_DB_ALIAS)
        unknown = set(self.options) - {"DATABASE"}
        if unknown:
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']: unknown option(s) {', '.join(sorted(unknown))}; known: DATABASE"
            )

    # -- enqueue -------------------------------------------------------------------------------------
    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        result_args: Any = compat.normalize_json(list(args))
        result_kwargs: Any = compat.normalize_json(dict(kwargs))
        for name, value in (("args", result_args), ("kwargs", result_kwargs)):
            try:
                check_json(value, path=name)
            except JSONValueError as exc:
                raise InvalidTaskError(f"task {task.module_path}: {exc}") from None
        payload = {
            "func": task.module_path,
            "args": result_args,
            "kwargs": result_kwargs,
            "queue": task.queue_name,
            "backend": self.alias,
            "takes_context": task.takes_context,
        }
        settings = get_settings()
        try:
            encoded = orjson.dumps(payload).decode()
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise InvalidTaskError(f"task {task.module_path}: arguments are not JSON: {exc}") from None
        if len(encoded) > settings.EVENTS.max_payload_bytes:
            raise InvalidTaskError(
                f"task {task.module_path}: arguments are {len(encoded)} bytes of JSON, over "
                f"DJANGO_AUTOMATE.EVENTS.max_payload_bytes ({settings.EVENTS.max_payload_bytes})"
            )
        params: dict[str, Any] = {
            "priority": task.priority,
            "payload": encoded,
            "run_after": task.run_after,
            "max_attempts": settings.EXECUTION.max_retries + 1,
        }
        with connections[self.using].cursor() as cursor:
            cursor.execute(queries.ENQUEUE_TASK, params)
            row = cursor.fetchone()
        assert row is not None  # an INSERT ... RETURNING
        job_id, created_at = row
        if synchronous.enabled():  # WORKER_MODE "synchronous": run it when the caller commits
            synchronous.run_on_commit(self.using, job_ids=[job_id])
        elif settings.EVENTS.notify == "commit":
            notify_on_commit(self.using)
        result: Any = TaskResult(
            task=task, id=str(job_id), status=TaskResultStatus.READY, enqueued_at=created_at, started_at=None,
            finished_at=None, last_attempted_at=None, args=result_args, kwargs=result_kwargs, backend=self.alias,
            errors=[], worker_ids=[],
        )
        compat.task_enqueued.send(type(self), task_result=result)
        return result

    # -- results -------------------------------------------------------------------------------------
    def get_result(self, result_id: str) -> TaskResult:
        try:
            job_id = int(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(f"no task result {result_id!r} (ids are outbox job ids)") from None
        with connections[self.using].cursor() as cursor:
            cursor.execute(queries.TASK_RESULT, {"id": job_id})
            row = cursor.fetchone()
        if row is None:
            raise TaskResultDoesNotExist(f"no task result {result_id!r}")
        return self._result(*row)

    def _result(self, job_id: int, status: str, payload: Any, created_at: Any, finished_at: Any, attempts: int,
                worker_id: str | None, last_error: str) -> TaskResult:
        if isinstance(payload, str):
            payload = orjson.loads(payload)
        payload = payload or {}
        outcome = payload.get("result") or {}
        try:
            task = load_task(payload.get("func", ""))
        except AutomateError as exc:
            raise TaskResultDoesNotExist(f"task result {job_id}: {exc}") from None
        task = task.using(priority=task.priority, queue_name=payload.get("queue") or task.queue_name)
        errors = [TaskError(exception_class_path=e.get("exception_class_path", ""), traceback=e.get("traceback", ""))
                  for e in outcome.get("errors") or []]
        if status == "FAILED" and not errors:
            errors = [TaskError(exception_class_path=f"{TaskJobFailed.__module__}.{TaskJobFailed.__qualname__}",
                                traceback=last_error)]
        worker_ids = list(outcome.get("worker_ids") or ([worker_id] if worker_id and status == "CLAIMED" else []))
        started = _parse_time(outcome.get("started_at"))
        result: Any = TaskResult(
            task=task, id=str(job_id), status=_STATUS.get(status, TaskResultStatus.READY), enqueued_at=created_at,
            started_at=started, finished_at=finished_at if status in ("COMPLETED", "FAILED") else None,
            last_attempted_at=started, args=payload.get("args", []), kwargs=payload.get("kwargs", {}),
            backend=payload.get("backend", self.alias), errors=errors, worker_ids=worker_ids,
        )
        if status == "COMPLETED":
            object.__setattr__(result, "_return_value", outcome.get("return_value"))
        return result


def _parse_time(value: Any) -> Any:
    if not value:
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None

"""The worker side of Django Tasks (``automate.tasks.AutomateTaskBackend``): one job of kind ``"task"``.

The job's ``payload.func`` must resolve to a ``@task`` (a Task instance): an outbox row cannot make the
worker call any other importable function. Async task functions run on the worker's event loop; sync
ones in its thread pool (at most ``EXECUTION.sync_threads``, ``run_sync_bounded``), or in its process
pool when ``WORKER_MODE`` is ``"process"`` (tasks that take a context stay in a thread: the context is
not picklable). Each holds one permit of the step semaphore while it runs and has the step deadline,
``EXECUTION.timeout_seconds``.

The outcome goes through the recorder's group commit (``Recorder.finish(..., result=...)``), fenced by
the claim token like every other write: the job ends COMPLETED (the task returned) or FAILED (it raised,
timed out or returned something JSON cannot hold), and ``payload.result`` holds the status, the return
value, the errors with their tracebacks (redacted: the worker's redactor, like every stored error) and
the worker id. A task that raises is not retried (Django's tasks have no retry policy); a worker that
dies mid-task gives it back through its lease, like any job (at least once).
"""

from __future__ import annotations

import asyncio
import traceback
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any

from automate.conf import get_settings
from automate.connectors.builtin import run_sync_bounded, run_sync_in_process
from automate.core.errors import AutomateError
from automate.core.jsonsafe import JSONValueError, check_json

from .deadlines import deadline
from .outcomes import error_text, storable_text
from .store import ClaimedJob

if TYPE_CHECKING:
    from .executor import Executor

__all__ = ["MAX_TRACEBACK_CHARS", "run_task"]

MAX_TRACEBACK_CHARS = 20_000


@lru_cache(maxsize=1024)
def _load_task(path: str) -> Any:
    """``automate.tasks.load_task``, once per path (a failure raises and is not cached): import_string per
    task was a measurable part of a no-op task."""
    from automate.tasks import load_task

    return load_task(path)


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def run_task(executor: Executor, job: ClaimedJob) -> bool:
    """Run one task job to its end; return whether its outcome was written (False: the lease was lost)."""
    payload = job.payload or {}
    worker_id = executor.cfg.worker_id
    redactor = executor.base_redactor
    started = ""
    path = str(payload.get("func") or "")
    try:
        async with executor.semaphore:
            started = _now()
            value = await _call(job, payload, path, executor.cfg.step_timeout, worker_id)
        if value is not None:
            from automate.tasks.compat import normalize_json

            value = normalize_json(value)
        check_json(value, path="return_value", max_depth=100)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if isinstance(exc, JSONValueError):
            exc = AutomateError(f"task {path}: the return value cannot be stored: {exc}")
        elif isinstance(exc, TimeoutError) and not str(exc):
            exc = TimeoutError(f"task {path} timed out after {executor.cfg.step_timeout:g}s")
        text = storable_text(redactor.redact_str("".join(traceback.format_exception(exc))))[-MAX_TRACEBACK_CHARS:]
        result: dict[str, Any] = {
            "status": "FAILED", "return_value": None, "started_at": started or _now(), "worker_ids": [worker_id],
            "errors": [{"exception_class_path": f"{type(exc).__module__}.{type(exc).__qualname__}",
                        "traceback": text}],
        }
        return await executor.recorder.finish(job.key, "FAILED", error_text(exc, redactor), result=result)
    done = {"status": "SUCCESSFUL", "return_value": value, "started_at": started, "worker_ids": [worker_id],
            "errors": []}
    return await executor.recorder.finish(job.key, "COMPLETED", "", result=done)


async def _call(job: ClaimedJob, payload: dict[str, Any], path: str, limit_s: float, worker_id: str) -> Any:
    task = _load_task(path)
    args = list(payload.get("args") or [])
    kwargs = dict(payload.get("kwargs") or {})
    if task.takes_context:
        args.insert(0, _context(task, job, payload, worker_id))
    with deadline(limit_s):
        if asyncio.iscoroutinefunction(task.func):
            return await task.func(*args, **kwargs)
        if get_settings().WORKER_MODE == "process" and not task.takes_context:
            return await run_sync_in_process(path, args, kwargs, label=path, task=True)
        return await run_sync_bounded(partial(task.func, *args, **kwargs), path)


def _context(task: Any, job: ClaimedJob, payload: dict[str, Any], worker_id: str) -> Any:
    """The task's context. ``attempt`` counts this job's claims; the ids of earlier attempts' workers are
    not recorded (a worker that died wrote nothing), so they show as ``"?"``."""
    from automate.tasks.compat import TaskContext, TaskResult, TaskResultStatus

    now = datetime.now(UTC)
    result: Any = TaskResult(
        task=task, id=str(job.id), status=TaskResultStatus.RUNNING, enqueued_at=None, started_at=now,
        finished_at=None, last_attempted_at=now, args=list(payload.get("args") or []),
        kwargs=dict(payload.get("kwargs") or {}), backend=str(payload.get("backend") or "default"), errors=[],
        worker_ids=["?"] * max(job.attempts - 1, 0) + [worker_id],
    )
    return TaskContext(task_result=result)

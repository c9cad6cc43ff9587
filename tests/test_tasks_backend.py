"""Django Tasks on the outbox (automate.tasks.AutomateTaskBackend), run by real worker drains on the real
database: enqueue in the caller's transaction, NOTIFY after the commit, results with errors and their
redacted tracebacks, priorities, deferral, context, bad inputs, and the synchronous mode."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from automate.aio.store import FlushBatch, PgStore
from automate.models import OutboxJob
from automate.tasks import AutomateTaskBackend, TaskJobFailed, compat
from automate.testing import InMemoryStore
from tests import automate_tasks as tasks
from tests.aio.conftest import drain
from tests.aio.conftest import make_config as make_config  # the worker fixture
from tests.conftest import drain_notifies

pytestmark = pytest.mark.django_db(transaction=True)

TASKS = {"default": {"BACKEND": "automate.tasks.AutomateTaskBackend"}}
ALLOW = {"POLICY": {"python_allowlist": ["tests.steps.*"]}}


@pytest.fixture(autouse=True)
def _backend():
    with override_settings(TASKS=TASKS):
        yield


def job_of(result) -> OutboxJob:
    return OutboxJob.objects.get(pk=int(result.id))


def test_the_backend_declares_its_capabilities_and_is_the_configured_one():
    backend = compat.task_backends["default"]
    assert isinstance(backend, AutomateTaskBackend)
    assert (backend.supports_defer, backend.supports_async_task, backend.supports_get_result,
            backend.supports_priority) == (True, True, True, True)
    import django

    expected = "django.tasks" if django.VERSION >= (6,) else "django_tasks"
    assert expected == compat.SOURCE


def test_enqueue_writes_a_task_job_in_the_callers_transaction(listener):
    with transaction.atomic():
        result = tasks.add.enqueue(2, b=3)
        job = job_of(result)
        assert drain_notifies(listener, 0.2) == []  # nothing before the commit
    assert (job.kind, job.status, job.priority, job.event_id, job.run_id) == ("task", "PENDING", 0, None, None)
    assert job.payload == {"func": "tests.automate_tasks.add", "args": [2], "kwargs": {"b": 3}, "queue": "default",
                           "backend": "default", "takes_context": False}
    assert [n.channel for n in drain_notifies(listener)] == ["automate_outbox"]
    assert result.status == compat.TaskResultStatus.READY and result.args == [2] and result.kwargs == {"b": 3}
    assert tasks.add.get_result(result.id).status == compat.TaskResultStatus.READY

    with pytest.raises(RuntimeError), transaction.atomic():
        tasks.add.enqueue(1, 1)
        raise RuntimeError("rolled back")
    assert OutboxJob.objects.count() == 1


def test_a_worker_runs_sync_tasks_in_threads_and_async_ones_on_its_loop(make_config):
    results = [tasks.add.enqueue(20, 22), tasks.where.enqueue(), tasks.awhere.enqueue(n=1)]
    cfg = make_config()
    drain(cfg)
    added, sync, asynchronous = (tasks.add.get_result(results[0].id), tasks.where.get_result(results[1].id),
                                 tasks.awhere.get_result(results[2].id))
    assert added.status == compat.TaskResultStatus.SUCCESSFUL and added.return_value == 42
    assert added.worker_ids == [cfg.worker_id] and added.errors == []
    assert added.enqueued_at <= added.started_at <= added.finished_at
    assert sync.return_value["thread"].startswith("automate-sync")
    assert asynchronous.return_value["thread"] == threading.current_thread().name  # drain's loop thread
    assert asynchronous.return_value["n"] == 1
    assert {job_of(r).status for r in results} == {"COMPLETED"}


async def test_aget_result_and_a_failure_with_a_redacted_traceback(make_config, async_db_cleanup):
    from asgiref.sync import sync_to_async

    result = await tasks.leak.aenqueue("hunter2-password")
    await asyncio.to_thread(drain, make_config())
    failed = await tasks.leak.aget_result(result.id)
    assert failed.status == compat.TaskResultStatus.FAILED
    [error] = failed.errors
    assert error.exception_class is ValueError
    assert "Traceback (most recent call last)" in error.traceback and "raise ValueError" in error.traceback
    assert "sk-live-abcdefghijklmnopqrstuvwx" not in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        _ = failed.return_value
    job = await sync_to_async(job_of)(result)
    assert job.status == "FAILED" and job.last_error.startswith("ValueError: upstream refused")
    assert "sk-live-abcdefghijklmnopqrstuvwx" not in job.last_error and "sk-live" not in str(job.payload)


def test_priority_orders_the_claims_and_run_after_defers(make_config, tmp_path):
    path = str(tmp_path / "order")
    low = tasks.note.using(priority=-5).enqueue(path, "low")
    high = tasks.note.enqueue(path, "high")  # the decorator's priority, 10
    assert (job_of(low).priority, job_of(high).priority) == (-5, 10)
    later = timezone.now() + timedelta(seconds=1)
    deferred = tasks.note.using(run_after=later).enqueue(path, "deferred")
    assert job_of(deferred).available_at == later
    drain(make_config(batch_size=1, concurrency=1, prefetch=0))
    assert Path(path).read_text().split() == ["high", "low", "deferred"]
    assert tasks.note.get_result(deferred.id).started_at >= later


def test_a_task_that_takes_its_context(make_config):
    result = tasks.with_context.enqueue(tag="t")
    drain(make_config())
    assert tasks.with_context.get_result(result.id).return_value == {"id": result.id, "attempt": 1, "tag": "t"}


def test_bad_inputs_are_refused_with_the_argument_named(make_config, tmp_path):
    with pytest.raises(compat.InvalidTaskError, match=r"task tests.automate_tasks.add: args\[0\]: NaN"):
        tasks.add.enqueue(float("nan"), 1)
    with pytest.raises(TypeError):
        tasks.add.enqueue(object(), 1)
    with pytest.raises(compat.InvalidTaskError, match="run_after must be an aware datetime"):
        tasks.add.using(run_after=timezone.now().replace(tzinfo=None))
    with pytest.raises(compat.InvalidTaskError, match="Queue 'other' is not valid"):
        tasks.add.using(queue_name="other")
    assert not OutboxJob.objects.exists()  # nothing stored
    for bad in ("nope", "999999"):
        with pytest.raises(compat.TaskResultDoesNotExist):
            compat.task_backends["default"].get_result(bad)

    # An outbox row naming a function that is not a @task is never called: the job fails, saying why.
    marker = tmp_path / "called"
    rogue = OutboxJob.objects.create(kind="task", payload={
        "func": "tests.automate_tasks.plain_function", "args": [str(marker)], "kwargs": {}})
    unstorable = tasks.not_json.enqueue()
    drain(make_config())
    rogue.refresh_from_db()
    assert rogue.status == "FAILED" and "is not a task (decorate the function with @task)" in rogue.last_error
    assert not marker.exists()
    failed = tasks.not_json.get_result(unstorable.id)
    assert failed.status == compat.TaskResultStatus.FAILED
    assert "the return value cannot be stored: return_value: NaN" in job_of(unstorable).last_error


def test_a_task_over_its_deadline_fails_and_a_lost_dead_letter_reports_the_job_error(make_config):
    with override_settings(DJANGO_AUTOMATE={"EXECUTION": {"timeout_seconds": 1}}):
        result = tasks.slow.enqueue(3)
    drain(make_config(step_timeout=0.3))
    late = tasks.slow.get_result(result.id)
    assert late.status == compat.TaskResultStatus.FAILED
    assert late.errors[0].exception_class is TimeoutError
    assert "timed out after 0.3s" in job_of(result).last_error

    lost = tasks.noop.enqueue()
    OutboxJob.objects.filter(pk=int(lost.id)).update(status="FAILED", last_error="lease expired on worker w1 "
                                                     "(no attempts left)")
    dead = tasks.noop.get_result(lost.id)
    assert dead.status == compat.TaskResultStatus.FAILED
    assert dead.errors[0].exception_class is TaskJobFailed
    assert "lease expired" in dead.errors[0].traceback


def test_synchronous_mode_runs_the_task_before_enqueue_returns(tmp_path):
    path = tmp_path / "ran"
    with override_settings(DJANGO_AUTOMATE={**ALLOW, "WORKER_MODE": "synchronous"}):
        result = tasks.touch.enqueue(str(path))
        assert path.read_text() == "ran"
        done = tasks.touch.get_result(result.id)
        assert done.status == compat.TaskResultStatus.SUCCESSFUL and done.return_value == "ran"
        assert done.worker_ids[0].startswith("sync-")
        with transaction.atomic():
            inner = tasks.add.enqueue(1, 2)
            assert job_of(inner).status == "PENDING"  # runs when the transaction commits
        assert tasks.add.get_result(inner.id).return_value == 3


@pytest.mark.parametrize("kind", ["pg", "memory"])
async def test_both_stores_keep_a_finished_tasks_result_in_its_payload(kind, pg_conninfo, async_db_cleanup):
    from asgiref.sync import sync_to_async

    if kind == "pg":
        store = PgStore(pg_conninfo)
        job_id = await sync_to_async(lambda: int(tasks.add.enqueue(1, 2).id))()
    else:
        store = InMemoryStore()
        job_id = store.add_event("x", {})
        store.jobs[job_id].kind, store.jobs[job_id].payload = "task", {"func": "f"}
    await store.open()
    try:
        [job] = await store.claim("w1", 1, 30)
        batch = FlushBatch(finished={job.key: ("COMPLETED", "")}, results={job.key: {"return_value": 3}})
        assert await store.flush("w1", batch) == {job.key}
        if kind == "pg":
            payload = await sync_to_async(lambda: OutboxJob.objects.get(pk=job_id).payload)()
        else:
            payload = store.jobs[job_id].payload
        assert payload["result"] == {"return_value": 3} and payload["func"]
    finally:
        await store.close()


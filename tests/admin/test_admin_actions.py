"""The admin's actions end to end, each against real worker drains: retry from the last completed step,
cancel at the next step boundary, replay, requeue of dead letters. Each writes its audit entry."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

import pytest

from automate.admin import OperationRefused, cancel_run, retry_run
from automate.aio.store import FlushBatch, PgStore, RunRow
from automate.aio.worker import Worker
from automate.models import AuditLogEntry, Event, ExecutionRun, OutboxJob, StepRun
from automate.runtime import emit_event
from automate.testing import InMemoryStore
from automate.workflows import publish
from tests.admin import steps as admin_steps
from tests.admin.conftest import action, calls, only_run, said
from tests.aio.conftest import drain
from tests.aio.procs import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def two_steps(marks: Path, counter: Path, failures: int = 1) -> list[dict]:
    return [
        {"id": "a", "type": "python", "config": {"callable": "tests.steps.mark", "kwargs": {"path": str(marks)}}},
        {"id": "b", "type": "python", "depends_on": ["a"], "max_retries": 0,
         "config": {"callable": "tests.steps.flaky",
                    "kwargs": {"path": str(counter), "failures": failures, "kind": "value"}}},
    ]


def attempts(run: ExecutionRun) -> list[tuple[str, int, str]]:
    return list(StepRun.objects.filter(run=run).order_by("step_id", "attempt").values_list("step_id", "attempt", "status"))


def test_retry_continues_a_failed_run_from_its_last_completed_step(admin_client, make_config, marks, tmp_path):
    publish("w", trigger_spec={"event": "x"}, steps=two_steps(marks, tmp_path / "count"))
    emit_event("x", {})
    drain(make_config())
    run = only_run()
    assert run.status == "FAILED" and len(calls(marks)) == 1
    assert OutboxJob.objects.get(kind="event").status == "FAILED"

    response = action(admin_client, "executionrun", "retry_runs", [run.pk])
    assert "1 run queued again from the last completed step." in said(response)
    run.refresh_from_db()
    assert (run.status, run.error, run.finished_at) == ("PENDING", "", None)
    job = OutboxJob.objects.get(kind="run")
    assert (job.status, str(job.run_id), str(job.event_id)) == ("PENDING", str(run.pk), str(run.event_id))
    entry = AuditLogEntry.objects.get(action="run.retried")
    assert (entry.actor, entry.resource) == ("user:admin", f"run:{run.pk}")
    assert entry.details["previous_status"] == "FAILED" and entry.details["job_id"] == job.pk

    # A second retry while the first is pending is refused: the run would run twice.
    response = action(admin_client, "executionrun", "retry_runs", [run.pk])
    assert f"run {run.pk} is PENDING; only FAILED or CANCELLED runs can be retried" in said(response)
    assert OutboxJob.objects.filter(kind="run").count() == 1

    drain(make_config())
    run.refresh_from_db()
    assert run.status == "SUCCEEDED", run.error
    assert len(calls(marks)) == 1  # step a is not run again
    assert attempts(run) == [("a", 1, "SUCCEEDED"), ("b", 1, "FAILED"), ("b", 2, "SUCCEEDED")]
    assert OutboxJob.objects.get(kind="run").status == "COMPLETED"
    assert AuditLogEntry.objects.filter(action="run.retried").count() == 1

    response = action(admin_client, "executionrun", "retry_runs", [run.pk])
    assert "is SUCCEEDED; only FAILED or CANCELLED runs can be retried" in said(response)


def test_cancel_stops_a_running_run_at_the_next_step_boundary(admin_client, make_config, marks):
    admin_steps.GATE.clear()
    admin_steps.ENTERED.clear()
    publish("w", trigger_spec={"event": "x"}, steps=[
        {"id": "a", "type": "python", "config": {"callable": "tests.admin.steps.gate"}},
        {"id": "b", "type": "python", "depends_on": ["a"],
         "config": {"callable": "tests.steps.mark", "kwargs": {"path": str(marks)}}},
    ])
    emit_event("x", {})
    worker = Worker(make_config(lease_seconds=0.6))
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(asyncio.run(worker.run())), daemon=True)
    thread.start()
    try:
        assert admin_steps.ENTERED.wait(20), "step a never started"
        wait_until(lambda: ExecutionRun.objects.filter(status="RUNNING").exists(), 10, "the run was never recorded")
        run = only_run()
        response = action(admin_client, "executionrun", "cancel_runs", [run.pk])
        assert "1 run cancelled." in said(response)
        run.refresh_from_db()
        assert run.status == "CANCELLED" and run.error == "cancelled by user:admin"
        wait_until(lambda: run.pk in worker.executor.cancelled, 10, "the worker never saw the cancel")
    finally:
        admin_steps.GATE.set()
    thread.join(30)
    assert outcome, "the worker did not drain"
    run.refresh_from_db()
    assert run.status == "CANCELLED"  # the worker's SUCCEEDED/RUNNING rows did not overwrite it
    assert calls(marks) == []  # step b never started
    assert attempts(run) == [("a", 1, "SUCCEEDED")]  # the step in flight finished and was recorded
    job = OutboxJob.objects.get()
    assert job.status == "COMPLETED", job.last_error
    entry = AuditLogEntry.objects.get(action="run.cancelled")
    assert (entry.actor, entry.details["previous_status"]) == ("user:admin", "RUNNING")

    response = action(admin_client, "executionrun", "cancel_runs", [run.pk])
    assert "is CANCELLED; only PENDING or RUNNING runs can be cancelled" in said(response)
    # A cancelled run can be retried: it continues after step a.
    retry_run(run.pk, actor="user:ops")
    drain(make_config())
    run.refresh_from_db()
    assert run.status == "SUCCEEDED" and len(calls(marks)) == 1
    assert attempts(run) == [("a", 1, "SUCCEEDED"), ("b", 1, "SUCCEEDED")]


def test_a_pending_run_cancelled_before_its_job_is_claimed_never_starts(make_config, marks):
    publish("w", trigger_spec={"event": "x"}, steps=[
        {"id": "a", "type": "python", "config": {"callable": "tests.steps.mark", "kwargs": {"path": str(marks)}}},
    ])
    from automate.runtime import run_workflow

    run_id = run_workflow("w", {})
    cancel_run(run_id, actor="user:ops")
    drain(make_config())
    run = ExecutionRun.objects.get(pk=run_id)
    assert run.status == "CANCELLED" and calls(marks) == []
    assert OutboxJob.objects.get().status == "COMPLETED"
    with pytest.raises(OperationRefused, match="does not exist"):
        cancel_run(uuid.uuid4(), actor="user:ops")


def test_replay_emits_a_new_event_matched_against_the_current_versions(admin_client, make_config):
    publish("w", trigger_spec={"event": "order.*"}, steps=[{"id": "t", "type": "transform", "config": {"output": 1}}])
    original = emit_event("order.created", {"order": {"id": 7}}, source="shop")
    drain(make_config())
    publish("w", trigger_spec={"event": "order.*"}, steps=[{"id": "t", "type": "transform", "config": {"output": 2}}])

    response = action(admin_client, "event", "replay_events", [original])
    assert "1 event replayed as new events." in said(response)
    replay = Event.objects.exclude(pk=original).get()
    assert (replay.type, replay.payload, replay.source) == ("order.created", {"order": {"id": 7}}, "shop")
    entry = AuditLogEntry.objects.get(action="event.replayed")
    assert entry.actor == "user:admin" and entry.details["replay_of"] == str(original)
    assert entry.details["event_id"] == str(replay.pk)
    drain(make_config())
    runs = {(str(r.event_id), r.workflow_version.version_num, r.status) for r in ExecutionRun.objects.all()}
    assert runs == {(str(original), 1, "SUCCEEDED"), (str(replay.pk), 2, "SUCCEEDED")}


def test_replay_needs_the_add_event_permission(client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(codename="view_event"))
    client.force_login(user)
    event_id = emit_event("x", {})
    page = client.get("/admin/automate/event/").content.decode()
    assert "replay_events" not in page
    action(client, "event", "replay_events", [event_id])
    assert Event.objects.count() == 1 and not AuditLogEntry.objects.exists()


def test_requeue_runs_a_dead_letter_again_from_its_last_completed_step(admin_client, make_config, marks, tmp_path):
    publish("w", trigger_spec={"event": "x"}, steps=two_steps(marks, tmp_path / "count"))
    emit_event("x", {})
    drain(make_config())
    job = OutboxJob.objects.get()
    assert job.status == "FAILED" and "bad input" in job.last_error
    last_error = job.last_error

    response = action(admin_client, "outboxjob", "requeue_jobs", [job.pk])
    assert "1 job requeued." in said(response)
    job.refresh_from_db()
    assert (job.status, job.attempts, job.last_error, job.worker_id, job.finished_at) == ("PENDING", 0, "", None, None)
    run = only_run()
    assert run.status == "PENDING"
    entry = AuditLogEntry.objects.get(action="job.requeued")
    assert entry.actor == "user:admin" and entry.details["last_error"] == last_error
    assert entry.details["reopened_runs"] == [str(run.pk)]

    drain(make_config())
    job.refresh_from_db()
    run.refresh_from_db()
    assert (job.status, run.status) == ("COMPLETED", "SUCCEEDED")
    assert len(calls(marks)) == 1
    response = action(admin_client, "outboxjob", "requeue_jobs", [job.pk])
    assert "is COMPLETED; only FAILED jobs (dead letters) can be requeued" in said(response)


@pytest.mark.parametrize("kind", ["pg", "memory"])
async def test_a_cancelled_run_is_never_overwritten_and_is_reported_to_the_worker(kind, pg_conninfo, async_db_cleanup):
    """The two stores agree: RECORD_FLUSH keeps CANCELLED, cancelled_runs() names it for its job."""
    from asgiref.sync import sync_to_async

    if kind == "pg":
        store = PgStore(pg_conninfo)
        version_id = await sync_to_async(lambda: publish("w", trigger_spec={"event": "x"}, steps=[
            {"id": "t", "type": "transform", "config": {"output": 1}}]).pk)()
        await sync_to_async(emit_event)("x", {})
    else:
        store = InMemoryStore()
        store.add_version(1, "w", {"event": "x"}, [{"id": "t", "type": "transform", "config": {"output": 1}}])
        store.add_event("x", {})
        version_id = 1
    await store.open()
    try:
        [job] = await store.claim("w1", 1, 30)
        run_id = uuid.uuid4()

        def row(status: str) -> RunRow:
            return RunRow(run_id, version_id, job.event_id or "", job.id, job.token, status)

        await store.flush("w1", FlushBatch(runs={run_id: row("RUNNING")}))
        assert await store.cancelled_runs([job.id]) == set()
        if kind == "pg":
            await sync_to_async(cancel_run)(run_id, actor="user:ops")
        else:
            store.runs[run_id]["status"] = "CANCELLED"
        assert await store.cancelled_runs([job.id]) == {run_id}
        assert await store.cancelled_runs([job.id + 1000]) == set()
        await store.flush("w1", FlushBatch(runs={run_id: row("SUCCEEDED")}))
        rows = await store.runs_by_id([str(run_id)])
        assert rows[0][3] == "CANCELLED"
    finally:
        await store.close()

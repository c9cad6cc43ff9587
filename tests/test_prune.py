"""Retention: manage.py automate_prune on real rows of every kind, also while a real worker drains."""

from __future__ import annotations

import datetime as dt
import threading
from io import StringIO

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.utils import timezone

from automate.models import AuditLogEntry, Event, ExecutionRun, OutboxJob, StepRun
from automate.retention import parse_age, prune
from automate.workflows import publish
from tests.aio.procs import WorkerProcess, wait_until

DAY = dt.timedelta(days=1)
STEPS = [
    {"id": "a", "type": "transform", "config": {"output": 1}},
    {"id": "b", "type": "transform", "depends_on": ["a"], "config": {"output": 2}},
]


@pytest.fixture
def version(db):
    return publish("prune-wf", trigger_spec={"event": "load.*"}, steps=STEPS)


def tree(
    version,
    name: str,
    *,
    age: dt.timedelta,
    job: str = "COMPLETED",
    job_finished: dt.timedelta | None = None,
    run: str | None = "SUCCEEDED",
    run_finished: dt.timedelta | None = None,
    kind: str = "event",
) -> Event:
    """An event ``age`` old with one job and (unless ``run`` is None) one run of two step runs."""
    now = timezone.now()
    event = Event.objects.create(type=f"t.{name}", payload={"name": name}, created_at=now - age)
    execution = None
    if run is not None:
        finished = None if run in ("PENDING", "RUNNING") else now - (run_finished if run_finished is not None else age - DAY / 2)
        execution = ExecutionRun.objects.create(workflow_version=version, event=event, status=run, finished_at=finished)
        for step in ("a", "b"):
            StepRun.objects.create(run=execution, step_id=step, status="SUCCEEDED")
    done = job in ("COMPLETED", "FAILED")
    OutboxJob.objects.create(
        kind=kind, event=event, run=execution if kind == "run" else None, status=job,
        finished_at=now - (job_finished if job_finished is not None else age - DAY / 2) if done else None,
    )
    return event


def surviving() -> set[str]:
    return {t.removeprefix("t.") for t in Event.objects.filter(type__startswith="t.").values_list("type", flat=True)}


def run_prune(*args: str) -> str:
    out = StringIO()
    call_command("automate_prune", *args, stdout=out)
    return out.getvalue().strip()


@pytest.fixture
def every_kind(version):
    tree(version, "old_succeeded", age=40 * DAY)
    tree(version, "old_failed", age=35 * DAY, job="FAILED", run="FAILED")
    tree(version, "old_cancelled", age=35 * DAY, run="CANCELLED")
    tree(version, "old_no_run", age=35 * DAY, job="FAILED", run=None)
    tree(version, "old_run_job", age=45 * DAY, kind="run")
    tree(version, "old_pending", age=40 * DAY, job="PENDING", run=None)
    tree(version, "old_claimed", age=40 * DAY, job="CLAIMED", run="RUNNING")
    tree(version, "old_run_still_running", age=40 * DAY, run="RUNNING")
    tree(version, "old_but_finished_yesterday", age=40 * DAY, job_finished=DAY, run_finished=DAY)
    tree(version, "old_job_but_run_finished_yesterday", age=40 * DAY, run_finished=DAY)
    tree(version, "young", age=5 * DAY)
    now = timezone.now()
    OutboxJob.objects.create(kind="task", status="COMPLETED", finished_at=now - 40 * DAY)  # a Django task
    OutboxJob.objects.create(kind="task", status="PENDING")
    AuditLogEntry.objects.create(actor="a", action="secret.used", resource="old", created_at=now - 100 * DAY)
    AuditLogEntry.objects.create(actor="a", action="secret.used", resource="recent", created_at=now - 10 * DAY)


KEPT = {
    "old_pending", "old_claimed", "old_run_still_running", "old_but_finished_yesterday",
    "old_job_but_run_finished_yesterday", "young",
}
PRUNED = {"old_succeeded", "old_failed", "old_cancelled", "old_no_run", "old_run_job"}


@pytest.mark.django_db
def test_prune_deletes_finished_trees_past_the_age_and_nothing_else(every_kind):
    output = run_prune("--older-than", "30d", "--batch-size", "2")
    assert output == (
        "deleted: 5 events, 6 jobs, 4 runs, 8 step runs, "
        "0 audit entries (RETENTION.audit_log_days is None: kept for ever)"
    )
    assert surviving() == KEPT
    kept = Event.objects.filter(type__startswith="t.")
    assert OutboxJob.objects.filter(event__in=kept).count() == len(KEPT)
    assert ExecutionRun.objects.filter(event__in=kept).count() == 5 and StepRun.objects.count() == 10
    assert list(OutboxJob.objects.filter(kind="task").values_list("status", flat=True)) == ["PENDING"]
    assert AuditLogEntry.objects.filter(resource__in=["old", "recent"]).count() == 2
    assert run_prune("--older-than", "30d").startswith("deleted: 0 events, 0 jobs, 0 runs, 0 step runs")


@pytest.mark.django_db
def test_dry_run_prints_the_counts_and_deletes_nothing(every_kind, settings):
    settings.DJANGO_AUTOMATE = {"RETENTION": {"audit_log_days": 30}}
    before = (Event.objects.count(), OutboxJob.objects.count(), ExecutionRun.objects.count(), StepRun.objects.count(),
              AuditLogEntry.objects.count())
    output = run_prune("--older-than", "30d", "--dry-run")
    assert output == "would delete: 5 events, 6 jobs, 4 runs, 8 step runs, 1 audit entries (older than 30 days)"
    after = (Event.objects.count(), OutboxJob.objects.count(), ExecutionRun.objects.count(), StepRun.objects.count(),
             AuditLogEntry.objects.count())
    assert after == before
    assert run_prune("--older-than", "30d") == output.replace("would delete", "deleted")


@pytest.mark.django_db
def test_audit_log_has_its_own_age(every_kind, settings):
    settings.DJANGO_AUTOMATE = {"RETENTION": {"audit_log_days": 30}}
    assert run_prune("--older-than", "400d").endswith(", 1 audit entries (older than 30 days)")
    assert list(AuditLogEntry.objects.filter(resource__in=["old", "recent"]).values_list("resource", flat=True)) == ["recent"]
    assert surviving() == KEPT | PRUNED  # nothing is 400 days old


@pytest.mark.django_db
def test_deletes_in_batches_of_the_given_size(version):
    for i in range(7):
        tree(version, f"e{i}", age=40 * DAY)
    counts = prune(30 * DAY, batch_size=3)
    assert (counts.events, counts.jobs, counts.runs, counts.step_runs) == (7, 7, 7, 14)
    assert counts.batches >= 3 + 1 + 1  # 3 event batches and the empty one, then the detached jobs
    assert surviving() == set()


@pytest.mark.django_db
def test_hours_and_minutes(version):
    tree(version, "two_hours", age=dt.timedelta(hours=2), job_finished=dt.timedelta(hours=2), run_finished=dt.timedelta(hours=2))
    run_prune("--older-than", "3h")
    assert surviving() == {"two_hours"}
    run_prune("--older-than", "90m")
    assert surviving() == set()


@pytest.mark.parametrize("value", ["30x", "30", "d", "", "0d", "-1d", "1.5d", "30 days", "9999999d", "999999d"])
def test_bad_ages_name_the_option_and_the_accepted_forms(value):
    with pytest.raises(CommandError) as info:
        call_command("automate_prune", f"--older-than={value}")
    assert str(info.value).startswith("--older-than: ")
    assert "30d, 12h, 90m" in str(info.value)


def test_parse_age():
    assert parse_age("30d") == 30 * DAY and parse_age("12h") == dt.timedelta(hours=12)
    assert parse_age("90m") == dt.timedelta(minutes=90)


@pytest.mark.parametrize("value", ["0", "-5", "200000"])
def test_bad_batch_size(value):
    with pytest.raises(CommandError, match=f"--batch-size: {value} is not between 1 and 100000"):
        call_command("automate_prune", "--older-than", "30d", "--batch-size", value)


@pytest.mark.django_db(transaction=True)
def test_prune_while_a_worker_drains_deletes_nothing_unfinished(version, pg_conninfo, tmp_path):
    """300 old finished trees to delete, and 300 jobs for events that are just as old but still pending:
    the worker drains them while prune runs in small batches, again and again."""
    for i in range(300):
        tree(version, f"done{i}", age=40 * DAY)
    pending = []
    now = timezone.now()
    for i in range(300):
        event = Event.objects.create(type="load.item", payload={"i": i}, created_at=now - 60 * DAY)
        OutboxJob.objects.create(kind="event", event=event, status="PENDING", max_attempts=4)
        pending.append(event.pk)
    worker = WorkerProcess(pg_conninfo, "--drain", "--poll-interval", "0.2", "--batch-size", "20", log=tmp_path / "w.log")
    passes, deleted = 0, 0
    try:
        wait_until(lambda: OutboxJob.objects.filter(event_id__in=pending).exclude(status="PENDING").exists(), 60,
                   f"the worker never claimed:\n{worker.output}")
        while worker.proc.poll() is None:
            deleted += prune(30 * DAY, batch_size=25).events
            passes += 1
        assert worker.wait(60) == 0, worker.output
    finally:
        worker.stop()
    assert passes >= 1 and deleted == 300 - len([e for e in surviving() if e.startswith("done")])
    deleted += prune(30 * DAY, batch_size=25).events
    assert deleted == 300 and surviving() == set()
    # Every pending event is still there, with its job completed and its run and both steps recorded.
    assert Event.objects.filter(pk__in=pending).count() == 300
    assert set(OutboxJob.objects.filter(event_id__in=pending).values_list("status", flat=True)) == {"COMPLETED"}
    runs = ExecutionRun.objects.filter(event_id__in=pending)
    assert runs.count() == 300 and set(runs.values_list("status", flat=True)) == {"SUCCEEDED"}
    assert StepRun.objects.filter(run__in=runs, status="SUCCEEDED").count() == 600
    # Finished just now: not old enough, whatever their events' age.
    assert prune(30 * DAY).events == 0


@pytest.mark.django_db(transaction=True)
def test_a_job_requeued_while_its_batch_waits_for_the_lock_is_left_alone(version, pg_conninfo):
    """The batch chose the event when its job was COMPLETED; another transaction requeues the job and
    commits while the batch waits for the job's row lock: the batch re-reads it and keeps the tree."""
    requeued = tree(version, "requeued", age=40 * DAY)
    tree(version, "other", age=40 * DAY)
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["counts"] = prune(30 * DAY)
        except BaseException as exc:
            result["error"] = exc
        finally:
            connections.close_all()

    with psycopg.connect(pg_conninfo) as other:  # a transaction, held open
        other.execute("UPDATE automate_outbox_job SET status = 'PENDING', finished_at = NULL WHERE event_id = %s",
                      [requeued.pk])
        thread = threading.Thread(target=run)
        thread.start()
        wait_until(lambda: _waiting_for_a_lock(other.info.backend_pid), 30, "prune never waited for the job's lock")
        other.commit()
        thread.join(60)
    assert "error" not in result, result
    counts = result["counts"]
    assert counts.events == 1 and requeued.pk in counts.skipped_events  # type: ignore[attr-defined]
    assert surviving() == {"requeued"}
    assert OutboxJob.objects.get(event=requeued).status == "PENDING"
    assert ExecutionRun.objects.filter(event=requeued).count() == 1 and StepRun.objects.count() == 2


def _waiting_for_a_lock(blocker_pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND %s = ANY(pg_blocking_pids(pid))",
            [blocker_pid],
        )
        return bool(cursor.fetchone()[0])

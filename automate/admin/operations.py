"""What the admin's actions do, as plain functions (also usable from a shell or a management command).

Each operation is one transaction that locks the rows it changes, refuses what would make the worker run
something twice, and writes its audit entry (``automate.audit.record``) in that same transaction, so an
operation that is rolled back leaves no entry and an entry always means the change happened.

* :func:`retry_run`: a FAILED (or CANCELLED) run goes back to PENDING with a new ``run`` job. The worker
  loads the run's StepRun progress: steps that SUCCEEDED (or were SKIPPED) are not run again, so the run
  continues from its last completed step; the step that failed gets one more attempt (its attempt number
  continues: ``#4`` after three).
* :func:`cancel_run`: a PENDING or RUNNING run becomes CANCELLED at once. A worker running it stops at the
  next step boundary (its lease loop reads the cancelled runs of its jobs); a step in flight finishes and
  is recorded, nothing after it starts. The run's job ends COMPLETED: cancelling is an operator's
  decision, not a failure, and a cancelled run is never a dead letter to requeue.
* :func:`replay_event`: a new Event with the original's type, payload and source, matched against the
  *current* workflow versions. The (event, version) unique constraint means the same event can never
  run twice on one version, so a replay is a new event; the audit entry's ``details.replay_of`` names the
  original.
* :func:`requeue_job`: a dead-lettered (FAILED) job becomes PENDING with ``attempts`` 0; its FAILED runs
  are reopened like :func:`retry_run` does, so the job continues them from their last completed step.
  The job's ``last_error`` is kept in the audit entry's details.
"""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import Q
from django.utils import timezone

from automate import audit
from automate.conf import get_settings
from automate.core.errors import AutomateError
from automate.models import Event, ExecutionRun, OutboxJob, RunStatus
from automate.notify import notify_on_commit

__all__ = ["OperationRefused", "actor_of", "cancel_run", "replay_event", "requeue_job", "retry_run"]

_OPEN_JOB = (OutboxJob.Status.PENDING, OutboxJob.Status.CLAIMED)
_OPEN_RUN = (RunStatus.PENDING, RunStatus.RUNNING)
_RETRYABLE = (RunStatus.FAILED, RunStatus.CANCELLED)


class OperationRefused(AutomateError):
    """An admin operation that cannot be done on this row in its current state (the message says why)."""


def actor_of(user: Any) -> str:
    """The audit actor of a Django user: ``user:<username>``."""
    return f"user:{user.get_username()}"[:200]


def _wake(using: str) -> None:
    if get_settings().EVENTS.notify == "commit":
        notify_on_commit(using)


def _open_jobs_for_run(run: ExecutionRun, using: str, exclude_job: int | None = None) -> list[int]:
    """Jobs still PENDING or CLAIMED that would run ``run``: its own ``run`` jobs and its event's job."""
    jobs = OutboxJob.objects.using(using).filter(status__in=_OPEN_JOB).filter(
        Q(kind=OutboxJob.Kind.RUN, run_id=run.pk) | Q(kind=OutboxJob.Kind.EVENT, event_id=run.event_id)
    )
    if exclude_job is not None:
        jobs = jobs.exclude(pk=exclude_job)
    return list(jobs.values_list("pk", flat=True))


def _locked_run(run_id: Any, allowed: tuple[str, ...], rule: str, using: str) -> ExecutionRun:
    """The run, locked for this transaction, if its status is one of ``allowed``; else OperationRefused."""
    run = ExecutionRun.objects.using(using).select_for_update().filter(pk=run_id).first()
    if run is None:
        raise OperationRefused(f"run {run_id} does not exist")
    if run.status not in allowed:
        raise OperationRefused(f"run {run.pk} is {run.status}; {rule}")
    return run


def _reopen(run: ExecutionRun, using: str) -> str:
    previous = run.status
    ExecutionRun.objects.using(using).filter(pk=run.pk).update(
        status=RunStatus.PENDING, error="", finished_at=None
    )
    return previous


def retry_run(run_id: Any, *, actor: str, using: str = DEFAULT_DB_ALIAS) -> OutboxJob:
    """Run a FAILED or CANCELLED run again from its last completed step; return the new job."""
    with transaction.atomic(using=using):
        run = _locked_run(run_id, _RETRYABLE, "only FAILED or CANCELLED runs can be retried", using)
        busy = _open_jobs_for_run(run, using)
        if busy:
            raise OperationRefused(f"run {run.pk} still has an open job ({', '.join(map(str, busy))})")
        previous_error = run.error
        previous = _reopen(run, using)
        job = OutboxJob.objects.using(using).create(
            kind=OutboxJob.Kind.RUN,
            status=OutboxJob.Status.PENDING,
            event_id=run.event_id,
            run_id=run.pk,
            max_attempts=get_settings().EXECUTION.max_retries + 1,
            payload={"retried_by": actor},
        )
        audit.record(actor, "run.retried", f"run:{run.pk}", {
            "run_id": str(run.pk), "job_id": job.pk, "previous_status": previous,
            "previous_error": previous_error[:500],
        })
        _wake(using)
    return job


def cancel_run(run_id: Any, *, actor: str, using: str = DEFAULT_DB_ALIAS) -> None:
    """Cancel a PENDING or RUNNING run; a worker running it stops at the next step boundary."""
    with transaction.atomic(using=using):
        run = _locked_run(run_id, _OPEN_RUN, "only PENDING or RUNNING runs can be cancelled", using)
        ExecutionRun.objects.using(using).filter(pk=run.pk).update(
            status=RunStatus.CANCELLED, error=f"cancelled by {actor}", finished_at=timezone.now()
        )
        audit.record(actor, "run.cancelled", f"run:{run.pk}", {"run_id": str(run.pk), "previous_status": run.status})


def replay_event(event_id: Any, *, actor: str, using: str = DEFAULT_DB_ALIAS) -> str:
    """Emit a copy of an event (type, payload, source) to the current workflow versions; return its id."""
    from automate.runtime import emit_event

    with transaction.atomic(using=using):
        event = Event.objects.using(using).filter(pk=event_id).first()
        if event is None:
            raise OperationRefused(f"event {event_id} does not exist")
        new_id = emit_event(event.type, event.payload, source=event.source or "", using=using)
        audit.record(actor, "event.replayed", f"event:{event.pk}", {
            "replay_of": str(event.pk), "event_id": new_id, "type": event.type,
        })
    return new_id


def requeue_job(job_id: int, *, actor: str, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Make a dead-lettered job PENDING again (attempts 0, due now); return the ids of the runs reopened."""
    with transaction.atomic(using=using):
        job = OutboxJob.objects.using(using).select_for_update().filter(pk=job_id).first()
        if job is None:
            raise OperationRefused(f"job {job_id} does not exist")
        if job.status != OutboxJob.Status.FAILED:
            raise OperationRefused(f"job {job.pk} is {job.status}; only FAILED jobs (dead letters) can be requeued")
        runs = ExecutionRun.objects.using(using).select_for_update()
        if job.kind == OutboxJob.Kind.RUN and job.run_id is not None:
            runs = runs.filter(pk=job.run_id)
        elif job.kind == OutboxJob.Kind.EVENT and job.event_id is not None:
            runs = runs.filter(event_id=job.event_id)
        else:
            runs = runs.none()
        failed = [r for r in runs if r.status == RunStatus.FAILED]
        for run in failed:
            busy = _open_jobs_for_run(run, using, exclude_job=job.pk)
            if busy:
                raise OperationRefused(f"run {run.pk} of job {job.pk} already has an open job ({busy[0]})")
        for run in failed:
            _reopen(run, using)
        payload = job.payload
        if job.kind == OutboxJob.Kind.TASK and isinstance(payload, dict):
            payload = {k: v for k, v in payload.items() if k != "result"}
        OutboxJob.objects.using(using).filter(pk=job.pk).update(
            status=OutboxJob.Status.PENDING, attempts=0, available_at=timezone.now(), worker_id=None,
            lease_expires_at=None, finished_at=None, last_error="", payload=payload,
        )
        audit.record(actor, "job.requeued", f"job:{job.pk}", {
            "job_id": job.pk, "kind": job.kind, "attempts": job.attempts, "last_error": job.last_error[:2000],
            "reopened_runs": [str(r.pk) for r in failed],
        })
        _wake(using)
    return [str(r.pk) for r in failed]

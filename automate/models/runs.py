"""ExecutionRun and StepRun.

Relations of the hot tables (ExecutionRun.event and .workflow_version, StepRun.run, OutboxJob.event and
.run) are Django foreign keys without a database constraint (``db_constraint=False``, migration 0007).

Why: a foreign-key check is a per-row trigger that takes a KEY SHARE lock on the parent row, and a row
lock is a write of that row (its header: WAL and a dirty page). Every recorded run locked its event and
its workflow version (the same version row for every run of a workflow, so concurrent workers shared it as
a multixact), and every step locked its run. Measured on the worker's record path, the constraints cost
about a fifth of its ceiling (benchmarks/, issue 12).

What keeps the integrity instead:
- the worker writes a run only for the event of a job it holds a claim on (read by that claim), a step
  only for a run of that job, in one transaction fenced by the claim token (queries.RECORD_FLUSH);
- events, versions and audit rows are immutable (a trigger refuses UPDATE), so a referenced key never
  changes;
- deletes go through Django (``on_delete`` is Django's own: CASCADE and PROTECT behave exactly as before
  in the ORM and the admin), or through retention, which deletes in order (step runs, jobs, runs, events)
  and only events whose jobs and runs have all finished;
- the unique constraints stay: one run per (event, version), one step row per (run, step, attempt).

What it trades: raw SQL that deletes a parent row (``DELETE FROM automate_event``) no longer cascades or
fails; it leaves the children behind (``manage.py automate_prune`` is the supported way to delete). A
workflow deleted in the ORM while a worker records a new run of it can leave that run pointing at a
version id that no longer exists.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models.functions import Now


class RunStatus(models.TextChoices):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class ExecutionRun(models.Model):
    """The state machine of one (event, workflow version). ``outputs`` is stored redacted."""

    Status = RunStatus

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Foreign keys of the hot tables are Django relations without a database constraint
    # (db_constraint=False): see this module's docstring for what that trades.
    workflow_version = models.ForeignKey(
        "automate.WorkflowVersion", on_delete=models.PROTECT, related_name="runs", db_constraint=False
    )
    # No separate index: the unique (event, workflow_version) constraint serves event lookups.
    event = models.ForeignKey(
        "automate.Event", on_delete=models.CASCADE, related_name="runs", db_index=False, db_constraint=False
    )
    status = models.CharField(max_length=16, choices=RunStatus.choices, db_default=RunStatus.PENDING)
    trace_id = models.CharField(max_length=32, blank=True, db_default="")
    outputs = models.JSONField(db_default={})
    error = models.TextField(blank=True, db_default="")
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "automate_execution_run"
        indexes = [models.Index(fields=["trace_id"], name="automate_run_trace_id")]
        constraints = [
            models.UniqueConstraint(fields=["event", "workflow_version"], name="automate_run_event_version_uniq")
        ]

    def __str__(self) -> str:
        return f"run {self.id} {self.status}"


class StepStatus(models.TextChoices):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    RETRYING = "RETRYING"
    # A durable ``delay`` step: ``output.until`` is the moment it ends; its job is parked until then.
    WAITING = "WAITING"


class StepRun(models.Model):
    """One attempt of one step. A SUCCEEDED or SKIPPED row is durable progress: never run again."""

    Status = StepStatus

    id = models.BigAutoField(primary_key=True)
    # No separate index: the unique (run, step_id, attempt) constraint serves run lookups.
    run = models.ForeignKey(
        ExecutionRun, on_delete=models.CASCADE, related_name="step_runs", db_index=False, db_constraint=False
    )
    step_id = models.CharField(max_length=64)
    attempt = models.PositiveIntegerField(db_default=1)
    status = models.CharField(max_length=16, choices=StepStatus.choices)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, db_default="")

    class Meta:
        db_table = "automate_step_run"
        constraints = [
            models.UniqueConstraint(fields=["run", "step_id", "attempt"], name="automate_steprun_attempt_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.step_id}#{self.attempt} {self.status}"

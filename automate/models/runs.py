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
    workflow_version = models.ForeignKey(
        "automate.WorkflowVersion", on_delete=models.PROTECT, related_name="runs"
    )
    # No separate index: the unique (event, workflow_version) constraint serves event lookups.
    event = models.ForeignKey("automate.Event", on_delete=models.CASCADE, related_name="runs", db_index=False)
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
    run = models.ForeignKey(ExecutionRun, on_delete=models.CASCADE, related_name="step_runs", db_index=False)
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

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class OutboxJob(models.Model):
    """The reliability queue. Claimed with ``FOR UPDATE SKIP LOCKED`` under a lease.

    FAILED is the dead letter: the job ran out of attempts or failed permanently; ``last_error`` says why.
    """

    class Status(models.TextChoices):
        PENDING = "PENDING"
        CLAIMED = "CLAIMED"
        COMPLETED = "COMPLETED"
        FAILED = "FAILED"

    class Kind(models.TextChoices):
        EVENT = "event", "match an event against workflows"
        RUN = "run", "execute (or resume) one ExecutionRun"
        TASK = "task", "a Django task"

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, db_default=Kind.EVENT)
    status = models.CharField(max_length=16, choices=Status.choices, db_default=Status.PENDING)
    priority = models.SmallIntegerField(db_default=0)
    # What the job refers to: an event to match, or a run to execute.
    # Relations without a database constraint: see automate/models/runs.py.
    event = models.ForeignKey("automate.Event", null=True, blank=True, on_delete=models.CASCADE, db_constraint=False)
    run = models.ForeignKey(
        "automate.ExecutionRun", null=True, blank=True, on_delete=models.CASCADE, db_index=False, db_constraint=False
    )
    payload = models.JSONField(null=True, blank=True)
    available_at = models.DateTimeField(db_default=Now())
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(db_default=0)
    max_attempts = models.PositiveIntegerField(db_default=4)
    worker_id = models.CharField(max_length=100, null=True, blank=True)
    # The fencing token: bumped by every claim and never lowered. Every write of a claimed job's outcome,
    # lease extension and release is fenced by (id, claim_token), so an owner that lost its lease (even
    # to itself, after an outage longer than the lease) can never overwrite the current one.
    claim_token = models.BigIntegerField(db_default=0, editable=False)
    last_error = models.TextField(blank=True, db_default="")
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "automate_outbox_job"
        indexes = [
            models.Index(fields=["status", "id"], name="automate_outbox_status_id"),
            # The claim: pending rows in priority order, then FIFO. Partial, so it stays small.
            models.Index(
                fields=["-priority", "id"],
                condition=models.Q(status="PENDING"),
                name="automate_outbox_pending",
            ),
            # Only "run" jobs have a run: a partial index costs event-job inserts nothing.
            models.Index(fields=["run"], condition=models.Q(run__isnull=False), name="automate_outbox_run"),
            # Recovery: claimed rows whose lease has expired.
            models.Index(
                fields=["lease_expires_at"],
                condition=models.Q(status="CLAIMED"),
                name="automate_outbox_leases",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["PENDING", "CLAIMED", "COMPLETED", "FAILED"]),
                name="automate_outbox_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.id} {self.kind} {self.status}"

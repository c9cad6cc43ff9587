from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.functions import Now

from .base import ImmutableModel


class Workflow(models.Model):
    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "automate_workflow"

    def __str__(self) -> str:
        return self.slug


class WorkflowVersion(ImmutableModel):
    """Immutable snapshot of a workflow's logic. Runs point here, never at Workflow."""

    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="versions")
    version_num = models.PositiveIntegerField()
    trigger_spec = models.JSONField(default=dict)
    steps = models.JSONField(default=list)
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    created_by = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        db_table = "automate_workflow_version"
        constraints = [
            models.UniqueConstraint(fields=["workflow", "version_num"], name="automate_wfv_num_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} v{self.version_num}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Validated on every save, however it is created (publish(), the admin, the ORM).
        from automate.workflows import validate_version

        validate_version(self.trigger_spec, self.steps)
        super().save(*args, **kwargs)


def _changed(sender: Any, **kwargs: Any) -> None:
    from automate.workflows import notify_workflows_changed

    notify_workflows_changed(kwargs.get("using") or "default")


for _model in (Workflow, WorkflowVersion):
    models.signals.post_save.connect(_changed, sender=_model, dispatch_uid=f"automate-{_model.__name__}-saved")
    models.signals.post_delete.connect(_changed, sender=_model, dispatch_uid=f"automate-{_model.__name__}-del")

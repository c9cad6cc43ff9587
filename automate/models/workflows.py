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

    # Not a field: who a save() that turns the workflow on or off is audited as (else "system"), for
    # paths that save the model themselves (an admin action). automate.workflows.set_enabled sets it.
    audit_actor: str | None = None

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


def _remember_enabled(sender: Any, instance: Workflow, raw: bool = False, **kwargs: Any) -> None:
    # The stored value, to tell in post_save whether this save turned the workflow on or off.
    instance._enabled_was = None  # type: ignore[attr-defined]
    update_fields = kwargs.get("update_fields")
    if raw or instance.pk is None or (update_fields is not None and "enabled" not in update_fields):
        return
    using = kwargs.get("using") or "default"
    instance._enabled_was = (  # type: ignore[attr-defined]
        Workflow.objects.using(using).filter(pk=instance.pk).values_list("enabled", flat=True).first()
    )


def _audit_enabled(sender: Any, instance: Workflow, created: bool = False, **kwargs: Any) -> None:
    was = getattr(instance, "_enabled_was", None)
    if created or was is None or was == instance.enabled:
        return
    from automate import audit

    actor = audit.SYSTEM_ACTOR if instance.audit_actor is None else instance.audit_actor
    action = "workflow.enabled" if instance.enabled else "workflow.disabled"
    audit.record(actor, action, f"workflow:{instance.slug}", {"workflow_id": instance.pk, "enabled": instance.enabled})
    instance._enabled_was = instance.enabled  # type: ignore[attr-defined]


models.signals.pre_save.connect(_remember_enabled, sender=Workflow, dispatch_uid="automate-Workflow-enabled-was")
models.signals.post_save.connect(_audit_enabled, sender=Workflow, dispatch_uid="automate-Workflow-enabled-audit")


def _changed(sender: Any, **kwargs: Any) -> None:
    from automate.workflows import notify_workflows_changed

    notify_workflows_changed(kwargs.get("using") or "default")


for _model in (Workflow, WorkflowVersion):
    models.signals.post_save.connect(_changed, sender=_model, dispatch_uid=f"automate-{_model.__name__}-saved")
    models.signals.post_delete.connect(_changed, sender=_model, dispatch_uid=f"automate-{_model.__name__}-del")

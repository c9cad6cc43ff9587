from __future__ import annotations

from django.db import models
from django.db.models.functions import Now

from .base import ImmutableModel


class AuditLogEntry(ImmutableModel):
    """Append-only compliance history. ``details`` is redacted before it is written."""

    id = models.BigAutoField(primary_key=True)
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=100, db_index=True)
    resource = models.CharField(max_length=300)
    details = models.JSONField(default=dict)
    created_at = models.DateTimeField(db_default=Now(), editable=False, db_index=True)

    class Meta:
        db_table = "automate_audit_log"
        verbose_name_plural = "audit log entries"

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.resource}"

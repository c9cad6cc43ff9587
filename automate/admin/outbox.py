"""The outbox: jobs and their dead letters (requeue)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.text import Truncator

from automate.models import OutboxJob

from .base import ViewOnlyFieldsAdmin, perform
from .operations import requeue_job
from .render import json_preview

__all__ = ["OutboxJobAdmin"]


@admin.register(OutboxJob)
class OutboxJobAdmin(ViewOnlyFieldsAdmin):
    list_display = ["id", "kind", "status", "priority", "attempts_shown", "available_at", "worker_id",
                    "error_short", "created_at"]
    list_filter = ["status", "kind"]
    search_fields = ["=status", "=kind", "worker_id", "last_error", "event__type"]
    actions = ["requeue_jobs"]
    exclude = ["payload"]
    readonly_fields = ["payload_shown"]

    @admin.display(description="attempts")
    def attempts_shown(self, obj: OutboxJob) -> str:
        return f"{obj.attempts}/{obj.max_attempts}"

    @admin.display(description="last error")
    def error_short(self, obj: OutboxJob) -> str:
        return Truncator(obj.last_error).chars(80)

    @admin.display(description="payload (redacted)")
    def payload_shown(self, obj: OutboxJob) -> Any:
        return json_preview(obj.payload)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.fields if f.name != "payload"] + ["payload_shown"]

    @admin.action(description="Requeue selected dead-lettered (FAILED) jobs", permissions=["change"])
    def requeue_jobs(self, request: HttpRequest, queryset: Any) -> None:
        perform(self, request, queryset, requeue_job, "{n} job{s} requeued.")

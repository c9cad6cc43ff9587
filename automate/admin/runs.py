"""Runs (step timeline, retry and cancel) and their step attempts."""

from __future__ import annotations

import contextlib
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from automate.models import ExecutionRun, OutboxJob, StepRun

from .base import ViewOnlyFieldsAdmin, perform
from .operations import cancel_run, retry_run
from .render import json_preview, step_timeline

__all__ = ["ExecutionRunAdmin", "StepRunAdmin"]


def _duration(obj: Any) -> str:
    if obj.started_at is None or obj.finished_at is None:
        return ""
    return f"{(obj.finished_at - obj.started_at).total_seconds() * 1000:.0f} ms"


@admin.register(ExecutionRun)
class ExecutionRunAdmin(ViewOnlyFieldsAdmin):
    list_display = ["id", "workflow", "status", "event_type", "trace_id", "created_at", "duration"]
    list_filter = ["status", "workflow_version__workflow", "created_at"]
    # Searched by status, workflow, trace id and event type (and the run id itself).
    search_fields = ["=status", "workflow_version__workflow__slug", "=trace_id", "event__type"]
    list_select_related = ["workflow_version__workflow", "event"]
    date_hierarchy = "created_at"
    actions = ["retry_runs", "cancel_runs"]
    change_form_template = "admin/automate/executionrun/change_form.html"
    fieldsets = [
        (None, {"fields": ["id", "workflow_version", "status", "trace_id", "event_link", "jobs"]}),
        ("Timing", {"fields": ["created_at", "started_at", "finished_at", "duration"]}),
        ("Steps", {"fields": ["timeline"]}),
        ("Outcome", {"fields": ["error_text", "outputs_shown"]}),
    ]
    readonly_fields = ["event_link", "jobs", "duration", "timeline", "error_text", "outputs_shown"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["id", "workflow_version", "status", "trace_id", "created_at", "started_at", "finished_at",
                *self.readonly_fields]

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        queryset, duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term:  # a run id pasted whole (an exact UUID match; not a text search on the key)
            import uuid

            with contextlib.suppress(ValueError):
                queryset |= self.model.objects.filter(pk=uuid.UUID(term))
        return queryset, duplicates

    @admin.display(description="workflow", ordering="workflow_version__workflow__slug")
    def workflow(self, obj: ExecutionRun) -> str:
        version = obj.workflow_version
        return f"{version.workflow.slug} v{version.version_num}"

    @admin.display(description="event type", ordering="event__type")
    def event_type(self, obj: ExecutionRun) -> str:
        return obj.event.type

    @admin.display(description="duration")
    def duration(self, obj: ExecutionRun) -> str:
        return _duration(obj)

    @admin.display(description="event")
    def event_link(self, obj: ExecutionRun) -> Any:
        url = reverse("admin:automate_event_change", args=[obj.event_id])
        return format_html('<a href="{}">{}</a> ({})', url, obj.event_id, obj.event.type)

    @admin.display(description="jobs")
    def jobs(self, obj: ExecutionRun) -> Any:
        jobs = OutboxJob.objects.filter(run_id=obj.pk) | OutboxJob.objects.filter(
            kind=OutboxJob.Kind.EVENT, event_id=obj.event_id
        )
        links = [
            format_html('<a href="{}">#{} {} {}</a>', reverse("admin:automate_outboxjob_change", args=[j.pk]),
                        j.pk, j.kind, j.status)
            for j in jobs.order_by("id")[:20]
        ]
        return format_html(", ".join(["{}"] * len(links)), *links) if links else "—"

    @admin.display(description="step timeline (every attempt)")
    def timeline(self, obj: ExecutionRun) -> Any:
        return step_timeline(obj.step_runs.all())

    @admin.display(description="error")
    def error_text(self, obj: ExecutionRun) -> Any:
        return format_html('<pre class="automate-error">{}</pre>', obj.error) if obj.error else "—"

    @admin.display(description="outputs (redacted)")
    def outputs_shown(self, obj: ExecutionRun) -> Any:
        return json_preview(obj.outputs)

    # -- actions -------------------------------------------------------------------------------------
    @admin.action(description="Retry selected failed runs from their last completed step", permissions=["change"])
    def retry_runs(self, request: HttpRequest, queryset: Any) -> None:
        perform(self, request, queryset, retry_run, "{n} run{s} queued again from the last completed step.")

    @admin.action(description="Cancel selected pending or running runs", permissions=["change"])
    def cancel_runs(self, request: HttpRequest, queryset: Any) -> None:
        perform(self, request, queryset, cancel_run, "{n} run{s} cancelled.")


@admin.register(StepRun)
class StepRunAdmin(ViewOnlyFieldsAdmin):
    list_display = ["run", "step_id", "attempt", "status", "started_at", "finished_at", "duration"]
    list_filter = ["status"]
    search_fields = ["step_id", "=status", "run__workflow_version__workflow__slug", "=run__trace_id"]
    list_select_related = ["run"]
    readonly_fields = ["duration", "output_shown"]
    exclude = ["output"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["run", "step_id", "attempt", "status", "started_at", "finished_at", "error", *self.readonly_fields]

    @admin.display(description="duration")
    def duration(self, obj: StepRun) -> str:
        return _duration(obj)

    @admin.display(description="output (redacted)")
    def output_shown(self, obj: StepRun) -> Any:
        return json_preview(obj.output)

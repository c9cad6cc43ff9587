"""Events (immutable; replay) and the audit log (append-only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from automate.models import AuditLogEntry, Event

from .base import ReadOnlyAdmin, perform
from .operations import replay_event
from .render import json_preview

__all__ = ["AuditLogEntryAdmin", "EventAdmin"]


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["id", "type", "source", "created_at", "dedupe_key"]
    list_filter = ["created_at"]
    search_fields = ["type", "source", "=dedupe_key"]
    date_hierarchy = "created_at"
    actions = ["replay_events"]
    fields = readonly_fields = ("id", "type", "source", "dedupe_key", "created_at", "traceparent", "payload_shown")

    @admin.display(description="payload (redacted)")
    def payload_shown(self, obj: Event) -> Any:
        return json_preview(obj.payload, limit=100_000)

    def has_replay_permission(self, request: HttpRequest) -> bool:
        # A replay stores a new event: the model's add permission, although the admin adds none by hand.
        return bool(request.user.has_perm("automate.add_event"))

    @admin.action(description="Replay selected events (a new event each, matched against the current versions)",
                  permissions=["replay"])
    def replay_events(self, request: HttpRequest, queryset: Any) -> None:
        perform(self, request, queryset, replay_event, "{n} event{s} replayed as new events.")


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor", "action", "resource"]
    list_filter = ["action", "created_at"]
    search_fields = ["actor", "=action", "resource"]
    date_hierarchy = "created_at"
    fields = readonly_fields = ("created_at", "actor", "action", "resource", "details_shown")

    @admin.display(description="details")
    def details_shown(self, obj: AuditLogEntry) -> Any:
        return json_preview(obj.details, limit=100_000)

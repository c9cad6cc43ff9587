"""Shared pieces of the admin: read-only model admins and audited actions."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from automate.core.errors import AutomateError

from .operations import actor_of

__all__ = ["ReadOnlyAdmin", "ViewOnlyFieldsAdmin", "perform"]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Immutable records (Event, WorkflowVersion, AuditLogEntry): no add, change or delete in the admin.
    The models refuse UPDATE anyway (``ImmutableRecordError``, and a database trigger); deletion is
    retention's job."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ViewOnlyFieldsAdmin(admin.ModelAdmin):
    """Runtime state (runs, steps, jobs): every field is read-only and nothing is added by hand; the
    change permission only gates the actions (retry, cancel, requeue)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = [f.name for f in self.model._meta.fields]
        return [*fields, *self.readonly_fields]

    def changeform_view(self, request: HttpRequest, object_id: Any = None, form_url: str = "",
                        extra_context: dict[str, Any] | None = None) -> Any:
        extra = {"show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False,
                 **(extra_context or {})}
        return super().changeform_view(request, object_id, form_url, extra)


def perform(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    objects: Iterable[Any],
    operation: Callable[..., Any],
    done: str,
) -> None:
    """Run ``operation(obj.pk, actor=...)`` for each object, each in its own transaction (one refusal does
    not undo the others), and report what happened: ``done`` for successes, the reason for refusals."""
    actor = actor_of(request.user)
    ok = 0
    for obj in objects:
        try:
            operation(obj.pk, actor=actor)
        except AutomateError as exc:
            modeladmin.message_user(request, str(exc), messages.ERROR)
        else:
            ok += 1
    if ok:
        modeladmin.message_user(request, done.format(n=ok, s="" if ok == 1 else "s"), messages.SUCCESS)

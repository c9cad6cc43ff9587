"""Workflows (a form that publishes new versions), their immutable versions, and the rule tester."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Max
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from automate.models import Workflow, WorkflowVersion

from .base import ReadOnlyAdmin
from .forms import RuleTesterForm, WorkflowForm
from .operations import actor_of
from .render import explain_tree, json_preview, short_json

__all__ = ["WorkflowAdmin", "WorkflowVersionAdmin"]


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    form = WorkflowForm
    list_display = ["slug", "name", "enabled", "current_version", "updated_at"]
    list_filter = ["enabled"]
    search_fields = ["slug", "name"]
    readonly_fields = ["version_list"]
    change_list_template = "admin/automate/workflow/change_list.html"
    fieldsets = [
        (None, {"fields": ["slug", "name", "enabled", "version_list"]}),
        ("Next version", {
            "fields": ["trigger_spec", "steps"],
            "description": "Saving publishes these specs as a new immutable version (an unchanged spec adds "
                           "none). Problems are shown at their exact path.",
        }),
    ]

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).annotate(_current=Max("versions__version_num"))

    @admin.display(description="current version", ordering="_current")
    def current_version(self, obj: Workflow) -> str:
        current = getattr(obj, "_current", None)
        return f"v{current}" if current else "—"

    @admin.display(description="versions")
    def version_list(self, obj: Workflow) -> Any:
        if obj.pk is None:
            return "—"
        versions = obj.versions.order_by("-version_num")[:50]
        links = [
            format_html('<a href="{}">v{}</a> ({}, {})', reverse("admin:automate_workflowversion_change", args=[v.pk]),
                        v.version_num, v.created_at.strftime("%Y-%m-%d %H:%M:%S") if v.created_at else "",
                        v.created_by or "—")
            for v in versions
        ]
        return format_html("<br>".join(["{}"] * len(links)), *links) if links else "—"

    def save_model(self, request: HttpRequest, obj: Workflow, form: Any, change: bool) -> None:
        from automate.workflows import publish

        actor = actor_of(request.user)
        obj.audit_actor = actor  # a change of `enabled` is audited as this user
        try:
            if change:
                obj.save()
            version = publish(
                obj.slug, trigger_spec=form.cleaned_data["trigger_spec"], steps=form.cleaned_data["steps"],
                name=obj.name, created_by=request.user.get_username(), enabled=obj.enabled, actor=actor,
            )
        finally:
            obj.audit_actor = None
        if not change:
            obj.pk = version.workflow_id
            obj.refresh_from_db()

    # -- the rule tester -----------------------------------------------------------------------------
    def get_urls(self) -> list[Any]:
        tester = path("rule-tester/", self.admin_site.admin_view(self.rule_tester_view),
                      name="automate_rule_tester")
        return [tester, *super().get_urls()]

    def rule_tester_view(self, request: HttpRequest) -> HttpResponse:
        """Evaluate a rule against a context and show the ``explain`` tree, each node passed or failed."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        initial: dict[str, Any] = {"context": {"event": {"type": "order.created", "payload": {"total": 120}}}}
        workflow = request.GET.get("workflow")
        if workflow and workflow.isdigit():
            current = WorkflowVersion.objects.filter(workflow_id=int(workflow)).order_by("-version_num").first()
            if current is not None and isinstance(current.trigger_spec, dict):
                initial["rule"] = current.trigger_spec.get("rule")
        form = RuleTesterForm(request.POST or None, initial=initial)
        tree = None
        result = None
        if request.method == "POST" and form.is_valid():
            explanation = form.cleaned_data["explanation"]
            tree = format_html('<ul class="automate-tree">{}</ul>', explain_tree(explanation))
            result = {"passed": bool(explanation.get("passed")), "value": short_json(explanation.get("value"))}
        context = {
            **self.admin_site.each_context(request),
            "title": "Rule tester",
            "opts": self.model._meta,
            "form": form,
            "tree": tree,
            "result": result,
            "changelist_url": reverse("admin:automate_workflow_changelist"),
        }
        return TemplateResponse(request, "admin/automate/rule_tester.html", context)


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(ReadOnlyAdmin):
    list_display = ["workflow", "version_num", "created_at", "created_by"]
    list_filter = ["workflow"]
    search_fields = ["workflow__slug", "created_by"]
    list_select_related = ["workflow"]
    fields = readonly_fields = ("workflow", "version_num", "created_at", "created_by", "trigger", "step_list")

    @admin.display(description="trigger spec")
    def trigger(self, obj: WorkflowVersion) -> Any:
        return json_preview(obj.trigger_spec, limit=100_000)

    @admin.display(description="steps")
    def step_list(self, obj: WorkflowVersion) -> Any:
        return json_preview(obj.steps, limit=100_000)

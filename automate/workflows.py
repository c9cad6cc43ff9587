"""Saving workflow versions: every spec is validated before it is stored, so a bad rule, step or
connector never reaches the worker. The worker is told after the commit (NOTIFY automate_workflows)."""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Max

from . import queries
from .conf import get_settings
from .connectors import get_connector
from .core.errors import SpecError
from .core.specs import StepsSpec, TriggerSpec, parse_steps, parse_trigger_spec

__all__ = ["notify_workflows_changed", "publish", "set_enabled", "validate_version"]


def validate_version(trigger_spec: Any, steps: Any) -> tuple[TriggerSpec, StepsSpec]:
    """Parse both specs and check every step's connector (known, allowed by policy, config valid)."""
    trigger = parse_trigger_spec(trigger_spec)
    parsed = parse_steps(steps)
    allow = get_settings().POLICY.connector_allowlist
    for index, step in enumerate(parsed.root):
        path = f"steps[{index}]"
        try:
            connector = get_connector(step.type)
        except SpecError as exc:
            raise SpecError(f"{path}.type: {exc}") from None
        if "*" not in allow and step.type not in allow:
            raise SpecError(
                f"{path}.type: connector {step.type!r} is not in DJANGO_AUTOMATE.POLICY.connector_allowlist"
            )
        connector.validate_config(step.config, path=f"{path}.config")
    return trigger, parsed


def notify_workflows_changed(using: str = DEFAULT_DB_ALIAS) -> None:
    """Tell the workers, after the commit, that workflows changed (at once in autocommit mode).

    One NOTIFY per transaction, however many rows it saved (publish() saves the workflow and its
    version). It is sent synchronously on Django's own connection when the commit hook runs, not by the
    background notifier: a process that publishes and exits at once has sent it before it exits. A
    failure to send (the connection lost right after the commit) is logged, not raised: the data is
    committed, and the workers' cache refreshes on its own within a poll interval.
    """
    conn = connections[using]
    if conn.in_atomic_block and any(
        getattr(entry[1], "automate_workflows", None) == using for entry in conn.run_on_commit
    ):
        return  # this transaction already sends one

    def send() -> None:
        with connections[using].cursor() as cursor:
            cursor.execute(queries.NOTIFY_WORKFLOWS)

    send.automate_workflows = using  # type: ignore[attr-defined]
    transaction.on_commit(send, using=using, robust=True)


def publish(
    slug: str,
    *,
    trigger_spec: Any,
    steps: Any,
    name: str | None = None,
    created_by: str = "",
    enabled: bool = True,
    actor: str | None = None,
) -> Any:
    """Create (or update) workflow ``slug`` with a new, validated version; return the WorkflowVersion.

    A new version is audited (``workflow.published``) by ``actor`` (else ``created_by``, else
    ``"system"``) in the same transaction; publishing an unchanged spec creates and audits nothing.
    """
    from . import audit
    from .models import Workflow, WorkflowVersion

    trigger, parsed = validate_version(trigger_spec, steps)
    with transaction.atomic():
        workflow, _ = Workflow.objects.select_for_update().get_or_create(
            slug=slug, defaults={"name": name or slug, "enabled": enabled}
        )
        if name and workflow.name != name:
            workflow.name = name
            workflow.save(update_fields=["name", "updated_at"])
        trigger_json, steps_json = trigger.model_dump(mode="json"), parsed.model_dump(mode="json")
        current = workflow.versions.order_by("-version_num").first()
        if current is not None and (current.trigger_spec, current.steps) == (trigger_json, steps_json):
            return current  # unchanged: publishing again creates no new version
        latest = workflow.versions.aggregate(n=Max("version_num"))["n"] or 0
        version = WorkflowVersion(
            workflow=workflow,
            version_num=latest + 1,
            trigger_spec=trigger_json,
            steps=steps_json,
            created_by=created_by,
        )
        version.save()
        changed = [] if current is None else [
            part
            for part, before, after in (
                ("trigger_spec", current.trigger_spec, trigger_json),
                ("steps", current.steps, steps_json),
            )
            if before != after
        ]
        audit.record(actor or created_by or audit.SYSTEM_ACTOR, "workflow.published", f"workflow:{slug}", {
            "workflow_id": workflow.pk,
            "version_id": version.pk,
            "version_num": version.version_num,
            "previous_version_num": None if current is None else current.version_num,
            "changed": changed,
        })
    return version


def set_enabled(slug: str, enabled: bool, *, actor: str = "system") -> Any:
    """Turn workflow ``slug`` on or off and return it. A change is audited (``workflow.enabled`` /
    ``workflow.disabled``) by ``actor`` in the same transaction; setting the current value does nothing.

    A plain ``workflow.save()`` that flips ``enabled`` is audited too (as ``"system"``); a queryset
    ``update()`` bypasses the models' signals and is not.
    """
    from .models import Workflow

    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, not {type(enabled).__name__}")
    with transaction.atomic():
        workflow = Workflow.objects.select_for_update().get(slug=slug)
        if workflow.enabled != enabled:
            workflow.enabled = enabled
            workflow.audit_actor = actor  # read by the post_save hook (automate.models.workflows)
            try:
                workflow.save(update_fields=["enabled", "updated_at"])
            finally:
                workflow.audit_actor = None
    return workflow

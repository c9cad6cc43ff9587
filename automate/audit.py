"""The audit log: who decided what, about which resource. Append-only (``AuditLogEntry`` refuses UPDATE).

``details`` always passes through :func:`automate.secrets.redact` before it is written, so a secret
that reaches an audit call by mistake is still not stored. Actions are stable dotted names
(``workflow.published``, ``policy.ssrf_denied``, ``secret.used``); :data:`ACTIONS` lists those the project
writes. The worker does not call this module: its entries join the recorder's group commit
(``Recorder.audit``), one transaction for many entries, never one each.

Run starts and finishes are not audited: ``ExecutionRun`` is that history.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

__all__ = ["ACTIONS", "SYSTEM_ACTOR", "arecord", "record"]

SYSTEM_ACTOR = "system"

ACTIONS = frozenset({
    "workflow.published",
    "workflow.enabled",
    "workflow.disabled",
    "policy.ssrf_denied",
    "policy.connector_denied",
    "policy.budget_denied",
    "secret.used",
    "secret.created",
    "secret.updated",
    "secret.deleted",
    "webhook.rejected",
    "run.retried",
    "run.cancelled",
    "event.replayed",
    "job.requeued",
})

_MAX_FIELD = {"actor": 200, "action": 100, "resource": 300}


def _checked(actor: str, action: str, resource: str) -> tuple[str, str, str]:
    values = {"actor": actor, "action": action, "resource": resource}
    for name, value in values.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"audit {name} must be a non-empty string, got {value!r}")
        if len(value) > _MAX_FIELD[name]:
            raise ValueError(f"audit {name} is longer than {_MAX_FIELD[name]} characters")
    return actor, action, resource


def record(actor: str, action: str, resource: str, details: dict[str, Any] | None = None) -> Any:
    """Write one AuditLogEntry (in the caller's transaction) and return it."""
    from django.apps import apps

    from automate.secrets import redact

    # Through the app registry, not ``automate.models``: the secret stores audit their writes, and they
    # are reachable from the worker, which must not import the models (an import-linter contract).
    AuditLogEntry = apps.get_model("automate", "AuditLogEntry")

    actor, action, resource = _checked(actor, action, resource)
    if details is not None and not isinstance(details, dict):
        raise ValueError(f"audit details must be a dict, got {type(details).__name__}")
    return AuditLogEntry.objects.create(actor=actor, action=action, resource=resource, details=redact(details or {}))


async def arecord(actor: str, action: str, resource: str, details: dict[str, Any] | None = None) -> Any:
    """:func:`record` from async code."""
    return await sync_to_async(record)(actor, action, resource, details)

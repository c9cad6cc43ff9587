"""Audit entries written by the worker, through the recorder's group commit."""

from __future__ import annotations

import pytest
from django.test import override_settings

from automate.models import AuditLogEntry, ExecutionRun, OutboxJob
from automate.runtime import emit_event
from automate.workflows import publish
from tests.aio.conftest import drain

pytestmark = pytest.mark.django_db(transaction=True)

ALLOW = {"python_allowlist": ["tests.steps.*"]}


def test_secret_used_is_audited_once_per_run_and_secret_by_name(make_config, monkeypatch):
    value = "hunter2-very-secret-value"
    monkeypatch.setenv("AUTOMATE_CRM_TOKEN", value)
    publish("crm", trigger_spec={"event": "x"}, steps=[
        {"id": "a", "type": "python", "config": {"callable": "tests.steps.echo", "kwargs": {"t": "$secret:CRM_TOKEN"}}},
        {"id": "b", "type": "python", "depends_on": ["a"],
         "config": {"callable": "tests.steps.echo", "kwargs": {"t": "$secret:CRM_TOKEN"}}},
    ])
    emit_event("x", {})
    emit_event("x", {})
    drain(make_config())
    entries = list(AuditLogEntry.objects.filter(action="secret.used"))
    assert len(entries) == 2  # one per run, not one per step
    assert {e.resource for e in entries} == {"secret:CRM_TOKEN"}
    assert {e.details["run_id"] for e in entries} == {str(r.id) for r in ExecutionRun.objects.all()}
    assert all(e.actor == "automate-worker" and value not in str(e.details) for e in entries)


def test_connector_allowlist_is_checked_again_at_run_time(make_config):
    publish("t", trigger_spec={"event": "x"}, steps=[{"id": "only", "type": "transform", "config": {"output": 1}}])
    emit_event("x", {})
    with override_settings(DJANGO_AUTOMATE={"POLICY": {**ALLOW, "connector_allowlist": ["python"]}}):
        drain(make_config())
    run = ExecutionRun.objects.get()
    assert run.status == "FAILED"
    assert "connector 'transform' is not in DJANGO_AUTOMATE.POLICY.connector_allowlist" in run.error
    assert OutboxJob.objects.get().status == "FAILED"
    entry = AuditLogEntry.objects.get(action="policy.connector_denied")
    assert entry.resource == "workflow:t"
    assert entry.details == {"run_id": str(run.id), "step": "only", "connector": "transform",
                             "policy": "POLICY.connector_allowlist"}

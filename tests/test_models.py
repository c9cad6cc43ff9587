"""The data model on a real PostgreSQL: immutability through the model and through raw SQL."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from automate.core.errors import ImmutableRecordError
from automate.models import (
    AuditLogEntry,
    Event,
    ExecutionRun,
    OutboxJob,
    StepRun,
    Workflow,
    WorkflowVersion,
)

pytestmark = pytest.mark.django_db


STEPS = [{"id": "a", "type": "transform", "config": {"output": 1}}]


@pytest.fixture
def version():
    wf = Workflow.objects.create(slug="orders", name="Orders")
    return WorkflowVersion.objects.create(workflow=wf, version_num=1, trigger_spec={"event": "order.*"}, steps=STEPS)


@pytest.fixture
def event():
    return Event.objects.create(type="order.created", payload={"id": 1})


@pytest.fixture
def audit():
    return AuditLogEntry.objects.create(actor="alice", action="workflow.save", resource="orders", details={})


IMMUTABLE = [
    ("event", "automate_event", "type", "order.hacked"),
    ("version", "automate_workflow_version", "version_num", 99),
    ("audit", "automate_audit_log", "actor", "mallory"),
]


@pytest.mark.parametrize(("fixture", "table", "field", "value"), IMMUTABLE)
def test_model_save_refuses_update(request, fixture, table, field, value):
    obj = request.getfixturevalue(fixture)
    original = getattr(obj, field)
    setattr(obj, field, value)
    with pytest.raises(ImmutableRecordError, match="immutable"):
        obj.save()
    obj.refresh_from_db()
    assert getattr(obj, field) == original


@pytest.mark.parametrize(("fixture", "table", "field", "value"), IMMUTABLE)
def test_queryset_update_refused(request, fixture, table, field, value):
    obj = request.getfixturevalue(fixture)
    with pytest.raises(ImmutableRecordError):
        type(obj).objects.filter(pk=obj.pk).update(**{field: value})
    with pytest.raises(ImmutableRecordError):
        setattr(obj, field, value)
        type(obj).objects.bulk_update([obj], [field])


@pytest.mark.parametrize(("fixture", "table", "field", "value"), IMMUTABLE)
def test_raw_sql_update_refused_by_trigger(request, fixture, table, field, value):
    obj = request.getfixturevalue(fixture)
    with pytest.raises(IntegrityError, match=f"rows of {table} are immutable"):
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(f"UPDATE {table} SET {field} = %s WHERE id = %s", [value, obj.pk])
    with connection.cursor() as cur:
        cur.execute(f"SELECT {field} FROM {table} WHERE id = %s", [obj.pk])
        assert cur.fetchone()[0] == getattr(type(obj).objects.get(pk=obj.pk), field)
    assert getattr(type(obj).objects.get(pk=obj.pk), field) != value


def test_immutable_rows_can_be_deleted_for_retention(event):
    Event.objects.filter(pk=event.pk).delete()
    assert not Event.objects.filter(pk=event.pk).exists()


def test_workflow_itself_is_mutable(version):
    Workflow.objects.filter(pk=version.workflow_id).update(enabled=False)
    assert Workflow.objects.get(pk=version.workflow_id).enabled is False


def test_version_num_unique_per_workflow(version):
    with pytest.raises(IntegrityError), transaction.atomic():
        WorkflowVersion.objects.create(
            workflow=version.workflow, version_num=1, trigger_spec={"event": "a"}, steps=STEPS
        )
    other = Workflow.objects.create(slug="other", name="Other")
    WorkflowVersion.objects.create(workflow=other, version_num=1, trigger_spec={"event": "a"}, steps=STEPS)


def test_dedupe_key_unique_only_where_set():
    Event.objects.create(type="a", payload={})
    Event.objects.create(type="a", payload={})
    Event.objects.create(type="a", payload={}, dedupe_key="k")
    with pytest.raises(IntegrityError), transaction.atomic():
        Event.objects.create(type="a", payload={}, dedupe_key="k")


def test_run_unique_per_event_and_version(version, event):
    ExecutionRun.objects.create(workflow_version=version, event=event)
    with pytest.raises(IntegrityError), transaction.atomic():
        ExecutionRun.objects.create(workflow_version=version, event=event)


def test_run_and_step_defaults_come_from_the_database(version, event):
    run = ExecutionRun.objects.create(workflow_version=version, event=event)
    run.refresh_from_db()
    assert (run.status, run.outputs, run.error, run.trace_id) == ("PENDING", {}, "", "")
    step = StepRun.objects.create(run=run, step_id="a", status="RUNNING")
    step.refresh_from_db()
    assert step.attempt == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        StepRun.objects.create(run=run, step_id="a", attempt=1, status="RUNNING")


def test_outbox_defaults_and_status_check(event):
    job = OutboxJob.objects.create(event=event)
    job.refresh_from_db()
    assert (job.kind, job.status, job.attempts, job.priority, job.last_error) == ("event", "PENDING", 0, 0, "")
    assert job.available_at is not None
    with pytest.raises(IntegrityError), transaction.atomic():
        OutboxJob.objects.filter(pk=job.pk).update(status="BOGUS")


def test_claim_index_exists():
    with connection.cursor() as cur:
        cur.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'automate_outbox_job'")
        defs = " ".join(r[0] for r in cur.fetchall())
    assert "(status, id)" in defs
    assert "WHERE ((status)::text = 'PENDING'::text)" in defs


def test_secret_repr_never_shows_ciphertext():
    from automate.models import Secret

    s = Secret(name="stripe", ciphertext="gAAAA-not-shown")
    assert "gAAAA" not in repr(s) and "gAAAA" not in str(s)

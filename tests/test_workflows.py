"""publish() validates before storing; run_workflow() refuses unknown or disabled workflows."""

from __future__ import annotations

import pytest

from automate.core.errors import SpecError
from automate.models import Event, ExecutionRun, OutboxJob, Workflow, WorkflowVersion
from automate.runtime import InvalidEventError, WorkflowNotFound, arun_workflow, run_workflow
from automate.workflows import publish

pytestmark = pytest.mark.django_db

OK = [{"id": "t", "type": "transform", "config": {"output": 1}}]


def test_publish_creates_versions_and_skips_unchanged():
    v1 = publish("w", trigger_spec={"event": "a"}, steps=OK, name="W")
    same = publish("w", trigger_spec={"event": "a"}, steps=OK)
    v2 = publish("w", trigger_spec={"event": "b"}, steps=OK)
    assert (v1.version_num, same.pk, v2.version_num) == (1, v1.pk, 2)
    assert Workflow.objects.get().name == "W"


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"id": "t", "type": "nope", "config": {}}], "steps[0].type: unknown connector type 'nope'"),
        ([{"id": "t", "type": "transform", "config": {}}], "steps[0].config.output: required"),
        ([{"id": "p", "type": "python", "config": {"callable": "os.system"}}], "steps[0].config.callable: 'os.system' is not in"),
        ([{"id": "p", "type": "python", "config": {"callable": "nodots"}}], "must be a dotted path"),
        ([{"id": "p", "type": "python", "config": {"callable": "tests.steps.noop", "kwargs": [1]}}], "kwargs: must be an object"),
        ([*OK, {"id": "u", "type": "transform", "depends_on": ["zz"], "config": {"output": 1}}], "unknown step 'zz'"),
    ],
)
def test_bad_steps_are_refused_and_nothing_is_stored(steps, message):
    publish("w", trigger_spec={"event": "a"}, steps=OK)
    with pytest.raises(SpecError) as err:
        publish("w", trigger_spec={"event": "a"}, steps=steps)
    assert message in str(err.value)
    assert WorkflowVersion.objects.count() == 1


def test_bad_trigger_rule_is_refused():
    with pytest.raises(SpecError, match=r"trigger.*unknown operator 'frobnicate'"):
        publish("w", trigger_spec={"event": "a", "rule": {"frobnicate": [1]}}, steps=OK)
    assert not Workflow.objects.exists()


def test_connector_allowlist_is_checked_at_save(settings):
    settings.DJANGO_AUTOMATE = {"POLICY": {"connector_allowlist": ["python"]}}
    with pytest.raises(SpecError, match="'transform' is not in DJANGO_AUTOMATE.POLICY.connector_allowlist"):
        publish("w", trigger_spec={"event": "a"}, steps=OK)


def test_versions_saved_through_the_orm_are_validated_too():
    wf = Workflow.objects.create(slug="raw", name="raw")
    with pytest.raises(SpecError):
        WorkflowVersion.objects.create(workflow=wf, version_num=1, trigger_spec={"event": "a"}, steps=[])


def test_run_workflow_creates_event_run_and_job():
    publish("w", trigger_spec={"event": "a"}, steps=OK)
    run_id = run_workflow("w", {"x": 1})
    run = ExecutionRun.objects.get(pk=run_id)
    assert run.status == "PENDING" and run.event.payload == {"x": 1}
    job = OutboxJob.objects.get()
    assert (job.kind, str(job.run_id), job.event_id) == ("run", run_id, run.event_id)


def test_run_workflow_unknown_slug():
    with pytest.raises(WorkflowNotFound, match="no workflow with slug 'ghost'"):
        run_workflow("ghost", {})
    assert not Event.objects.exists()


def test_run_workflow_disabled():
    publish("w", trigger_spec={"event": "a"}, steps=OK, enabled=False)
    with pytest.raises(WorkflowNotFound, match="'w' is disabled"):
        run_workflow("w", {})
    assert not OutboxJob.objects.exists()


def test_run_workflow_validates_the_payload():
    publish("w", trigger_spec={"event": "a"}, steps=OK)
    with pytest.raises(ValueError, match="payload must be a dict"):
        run_workflow("w", ["not", "a", "dict"])  # type: ignore[arg-type]
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"x": float("nan")}, r"payload\.x: NaN is not a JSON number"),
        ({"x": [float("inf")]}, r"payload\.x\[0\]: Infinity is not a JSON number"),
        ({"x": {"y": -float("inf")}}, r"payload\.x\.y: -Infinity is not a JSON number"),
        ({"x": "a\x00"}, r"payload\.x: contains a NUL character"),
    ],
)
def test_run_workflow_refuses_nan_and_infinity(payload, message):
    publish("w", trigger_spec={"event": "a"}, steps=OK)
    with pytest.raises(InvalidEventError, match=message):
        run_workflow("w", payload)
    assert not Event.objects.exists() and not ExecutionRun.objects.exists() and not OutboxJob.objects.exists()


@pytest.mark.django_db(transaction=True)
async def test_arun_workflow_refuses_nan(async_db_cleanup):
    from asgiref.sync import sync_to_async

    await sync_to_async(publish)("w", trigger_spec={"event": "a"}, steps=OK)
    with pytest.raises(InvalidEventError, match=r"payload\.x: NaN is not a JSON number"):
        await arun_workflow("w", {"x": float("nan")})
    assert not await Event.objects.aexists()


@pytest.mark.parametrize(
    ("trigger_spec", "steps", "where"),
    [
        ({"event": "a", "rule": {"==": [{"var": "x"}, float("nan")]}}, OK, "trigger"),
        ({"event": "a", "rule": {"<": [{"var": "x"}, float("inf")]}}, OK, "trigger"),
        ({"event": "a"}, [{"id": "t", "type": "transform", "config": {"output": {"v": float("nan")}}}], "steps[0]"),
        ({"event": "a"}, [{"id": "t", "type": "transform", "config": {"output": [-float("inf")]}}], "steps[0]"),
    ],
)
def test_specs_refuse_nan_and_infinity(trigger_spec, steps, where):
    with pytest.raises(SpecError, match="NaN or Infinity") as err:
        publish("w", trigger_spec=trigger_spec, steps=steps)
    assert where in str(err.value)
    assert not WorkflowVersion.objects.exists()


@pytest.fixture
def workflows_listener(pg_conninfo):
    import psycopg

    with psycopg.connect(pg_conninfo, autocommit=True) as conn:
        conn.execute("LISTEN automate_workflows")
        yield conn


@pytest.mark.django_db(transaction=True)
def test_one_workflows_notification_per_transaction(workflows_listener):
    """publish() saves the workflow and its version: the workers are told once, after the commit."""
    from django.db import transaction

    from tests.conftest import drain_notifies

    publish("w", trigger_spec={"event": "a"}, steps=OK)
    assert [n.channel for n in drain_notifies(workflows_listener)] == ["automate_workflows"]
    with transaction.atomic():
        publish("w", trigger_spec={"event": "b"}, steps=OK)
        publish("w2", trigger_spec={"event": "c"}, steps=OK)
    assert len(drain_notifies(workflows_listener)) == 1
    with pytest.raises(RuntimeError), transaction.atomic():
        publish("w3", trigger_spec={"event": "d"}, steps=OK)
        raise RuntimeError
    assert drain_notifies(workflows_listener) == []

"""The worker end to end, in-process, against the real database."""

from __future__ import annotations

import pytest

from automate.models import Event, ExecutionRun, OutboxJob, StepRun
from automate.runtime import emit_event, run_workflow
from automate.workflows import publish
from tests import steps
from tests.aio.conftest import drain

pytestmark = pytest.mark.django_db(transaction=True)


def one_step(step_type: str = "python", **config):
    return [{"id": "only", "type": step_type, "config": config}]


def test_event_runs_matching_workflow_and_records_everything(make_config):
    publish("orders", trigger_spec={"event": "order.*"}, steps=one_step(callable="tests.steps.noop"))
    publish("invoices", trigger_spec={"event": "invoice.*"}, steps=one_step(callable="tests.steps.noop"))
    event_id = emit_event("order.created", {"id": 1})
    stats = drain(make_config())
    assert stats.claimed == 1
    run = ExecutionRun.objects.get()
    assert (str(run.event_id), run.workflow_version.workflow.slug, run.status) == (event_id, "orders", "SUCCEEDED")
    assert run.outputs == {"only": {"ok": True}}
    assert run.started_at <= run.finished_at
    step = StepRun.objects.get()
    assert (step.step_id, step.attempt, step.status, step.output) == ("only", 1, "SUCCEEDED", {"ok": True})
    job = OutboxJob.objects.get()
    assert (job.status, job.attempts, job.worker_id is not None, job.finished_at is not None) == (
        "COMPLETED", 1, True, True,
    )


def test_trigger_rule_selects_events(make_config):
    publish(
        "big-orders",
        trigger_spec={"event": "order.created", "rule": {">": [{"var": "event.payload.total"}, 100]}},
        steps=one_step(callable="tests.steps.noop"),
    )
    small = emit_event("order.created", {"total": 50})
    big = emit_event("order.created", {"total": 150})
    drain(make_config())
    assert [str(r.event_id) for r in ExecutionRun.objects.all()] == [big]
    assert OutboxJob.objects.get(event_id=small).status == "COMPLETED"


def test_no_matching_workflow_completes_the_job(make_config):
    emit_event("nobody.cares", {})
    drain(make_config())
    assert OutboxJob.objects.get().status == "COMPLETED"
    assert ExecutionRun.objects.count() == 0


def test_dag_templates_and_transform(make_config):
    publish(
        "pipeline",
        trigger_spec={"event": "order.created"},
        steps=[
            {"id": "a", "type": "python", "config": {"callable": "tests.steps.echo", "kwargs": {"n": "{{ event.payload.n }}"}}},
            {"id": "b", "type": "transform", "config": {"output": {"double": {"$expr": {"*": [{"var": "event.payload.n"}, 2]}}}}},
            {
                "id": "c",
                "type": "transform",
                "depends_on": ["a", "b"],
                "config": {"output": {"from_a": "{{ steps.a.output.kwargs.n }}", "from_b": "{{ steps.b.output.double }}", "run": "{{ run.id }}"}},
            },
            {"id": "skipped", "type": "transform", "when": {"==": [1, 2]}, "config": {"output": 1}},
        ],
    )
    emit_event("order.created", {"n": 21})
    drain(make_config())
    run = ExecutionRun.objects.get()
    assert run.status == "SUCCEEDED", run.error
    assert run.outputs["c"] == {"from_a": 21, "from_b": 42, "run": str(run.id)}
    assert run.outputs["a"]["idempotency_key"] == f"{run.id}:a"
    statuses = dict(StepRun.objects.values_list("step_id", "status"))
    assert statuses == {"a": "SUCCEEDED", "b": "SUCCEEDED", "c": "SUCCEEDED", "skipped": "SKIPPED"}


def test_sync_callables_run_in_a_thread_not_on_the_loop(make_config):
    steps.THREADS.clear()
    publish("t", trigger_spec={"event": "x"}, steps=one_step(callable="tests.steps.echo"))
    emit_event("x", {})
    drain(make_config())
    assert steps.THREADS and all(name != "MainThread" for name in steps.THREADS)


def test_transient_failure_is_retried_then_succeeds(make_config, tmp_path):
    counter = tmp_path / "count"
    publish(
        "flaky",
        trigger_spec={"event": "x"},
        steps=[{
            "id": "f", "type": "python", "max_retries": 3,
            "retry": {"base_seconds": 0.01, "max_seconds": 0.05},
            "config": {"callable": "tests.steps.flaky", "kwargs": {"path": str(counter), "failures": 2}},
        }],
    )
    emit_event("x", {})
    drain(make_config())
    run = ExecutionRun.objects.get()
    assert run.status == "SUCCEEDED"
    attempts = list(StepRun.objects.order_by("attempt").values_list("attempt", "status"))
    assert attempts == [(1, "RETRYING"), (2, "RETRYING"), (3, "SUCCEEDED")]
    assert "upstream timed out" in StepRun.objects.get(attempt=1).error


def test_retries_exhausted_fails_run_and_dead_letters_job(make_config, tmp_path):
    publish(
        "flaky",
        trigger_spec={"event": "x"},
        steps=[{
            "id": "f", "type": "python", "max_retries": 1, "retry": {"base_seconds": 0.01},
            "config": {"callable": "tests.steps.flaky", "kwargs": {"path": str(tmp_path / "c"), "failures": 9, "kind": "connection"}},
        }],
    )
    emit_event("x", {})
    drain(make_config())
    run = ExecutionRun.objects.get()
    assert run.status == "FAILED" and "connection reset" in run.error and "step 'f'" in run.error
    assert StepRun.objects.count() == 2
    job = OutboxJob.objects.get()
    assert job.status == "FAILED" and "connection reset" in job.last_error


def test_permanent_failure_is_not_retried(make_config):
    publish(
        "bad",
        trigger_spec={"event": "x"},
        steps=[
            {"id": "a", "type": "python", "max_retries": 5, "config": {"callable": "tests.steps.fail_permanently"}},
            {"id": "after", "type": "transform", "depends_on": ["a"], "config": {"output": 1}},
        ],
    )
    emit_event("x", {})
    drain(make_config())
    assert list(StepRun.objects.values_list("step_id", "attempt", "status")) == [("a", 1, "FAILED")]
    assert ExecutionRun.objects.get().status == "FAILED"


def test_step_timeout_is_transient_and_bounded(make_config):
    publish(
        "slow",
        trigger_spec={"event": "x"},
        steps=[{
            "id": "s", "type": "python", "timeout_seconds": 0.1, "max_retries": 1, "retry": {"base_seconds": 0.01},
            "config": {"callable": "tests.steps.asleep", "kwargs": {"seconds": 5}},
        }],
    )
    emit_event("x", {})
    drain(make_config())
    rows = list(StepRun.objects.order_by("attempt").values_list("status", "error"))
    assert [r[0] for r in rows] == ["RETRYING", "FAILED"]
    assert all("timed out" in r[1] for r in rows)


def test_long_retry_wait_is_parked_in_the_database(make_config, tmp_path):
    publish(
        "parked",
        trigger_spec={"event": "x"},
        steps=[{
            "id": "f", "type": "python", "max_retries": 2, "retry": {"kind": "fixed", "base_seconds": 0.6, "jitter": "none"},
            "config": {"callable": "tests.steps.flaky", "kwargs": {"path": str(tmp_path / "c"), "failures": 1}},
        }],
    )
    emit_event("x", {})
    drain(make_config(park_after=0.1))
    job = OutboxJob.objects.get()
    assert job.status == "COMPLETED"
    assert job.payload == {"parked": 1}
    assert job.attempts == 1  # parking does not use up attempts
    assert list(StepRun.objects.order_by("attempt").values_list("attempt", "status")) == [
        (1, "RETRYING"), (2, "SUCCEEDED"),
    ]


def test_run_workflow_bypasses_rules(make_config):
    publish("direct", trigger_spec={"event": "never.emitted"}, steps=one_step("transform", output="{{ event.payload.x }}"))
    run_id = run_workflow("direct", {"x": 5})
    drain(make_config())
    run = ExecutionRun.objects.get(pk=run_id)
    assert (run.status, run.outputs) == ("SUCCEEDED", {"only": 5})
    assert run.event.type == "automate.run_workflow" and run.event.source == "run_workflow:direct"


def test_disallowed_callable_fails_the_step_clearly(make_config, settings):
    publish("p", trigger_spec={"event": "x"}, steps=one_step(callable="tests.steps.noop"))
    settings.DJANGO_AUTOMATE = {"POLICY": {"python_allowlist": ["other.*"]}}
    emit_event("x", {})
    drain(make_config())
    step = StepRun.objects.get()
    assert step.status == "FAILED" and "python_allowlist" in step.error


def test_non_json_output_fails_the_step(make_config):
    publish("p", trigger_spec={"event": "x"}, steps=one_step(callable="tests.steps.not_json"))
    emit_event("x", {})
    drain(make_config())
    assert "not JSON-serialisable" in StepRun.objects.get().error


def test_kill_switch_claims_nothing_and_loses_nothing(make_config):
    publish("p", trigger_spec={"event": "x"}, steps=one_step(callable="tests.steps.noop"))
    emit_event("x", {})
    stats = drain(make_config(enabled=False))
    assert stats.claimed == 0
    assert OutboxJob.objects.get().status == "PENDING" and Event.objects.count() == 1
    drain(make_config())
    assert OutboxJob.objects.get().status == "COMPLETED"


def test_many_events_many_workflows(make_config):
    for i in range(3):
        publish(f"w{i}", trigger_spec={"event": "bulk.*"}, steps=one_step("transform", output=i))
    for i in range(200):
        emit_event("bulk.item", {"i": i})
    stats = drain(make_config(batch_size=25))
    assert stats.claimed == 200
    assert ExecutionRun.objects.filter(status="SUCCEEDED").count() == 600
    assert StepRun.objects.count() == 600
    assert OutboxJob.objects.filter(status="COMPLETED").count() == 200


def test_secrets_resolve_late_and_never_reach_stored_output(make_config, monkeypatch):
    """A step that returns the secret (leak) and one that raises with it in the message (leak_raise):
    neither the stored output nor any stored error (step, run, job) contains the value."""
    secret = "s3cr3t-v4lue-that-must-not-leak"
    monkeypatch.setenv("AUTOMATE_LEAKY_TOKEN", secret)
    kwargs = {"secret": "$secret:LEAKY_TOKEN"}
    publish(
        "leaky",
        trigger_spec={"event": "x"},
        steps=[
            {"id": "leak", "type": "python", "config": {"callable": "tests.steps.leak", "kwargs": kwargs}},
            {"id": "echo_payload", "type": "transform", "config": {"output": "{{ event.payload.text }}"}},
        ],
    )
    publish(
        "leaky-raise",
        trigger_spec={"event": "x"},
        steps=[{"id": "leak_raise", "type": "python", "config": {"callable": "tests.steps.leak_raise", "kwargs": kwargs}}],
    )
    # A payload naming a secret is data, never a reference to resolve.
    emit_event("x", {"text": "$secret:LEAKY_TOKEN"})
    drain(make_config())

    returned = ExecutionRun.objects.get(workflow_version__workflow__slug="leaky")
    assert returned.status == "SUCCEEDED", returned.error
    assert returned.outputs["leak"] == {"note": "the value is [REDACTED]", "copy": "[REDACTED]"}
    assert StepRun.objects.get(run=returned, step_id="leak").output == returned.outputs["leak"]
    assert returned.outputs["echo_payload"] == "$secret:LEAKY_TOKEN"

    raised = ExecutionRun.objects.get(workflow_version__workflow__slug="leaky-raise")
    assert raised.status == "FAILED"
    step = StepRun.objects.get(step_id="leak_raise")
    assert step.status == "FAILED" and "upstream rejected the token" in step.error and "[REDACTED]" in step.error

    stored = [
        *ExecutionRun.objects.values_list("outputs", "error"),
        *StepRun.objects.values_list("output", "error"),
        *OutboxJob.objects.values_list("last_error", flat=True),
    ]
    assert secret not in str(stored)


def test_db_secrets_keep_working_after_their_connection_is_cut(make_config, monkeypatch, pg_conninfo):
    """A worker resolving db-backend secrets, then pg_terminate_backend of every other connection to the
    database: the next runs still resolve them (before, every later run failed, permanently, with
    "the connection is closed")."""
    import psycopg
    from cryptography.fernet import Fernet
    from django.conf import settings
    from django.db import connection
    from django.test import override_settings

    from automate.secrets import set_secret
    from tests.aio.procs import wait_until

    conf = {**settings.DJANGO_AUTOMATE, "SECRETS": {"backend": "db", "encryption_key": Fernet.generate_key().decode()}}
    with override_settings(DJANGO_AUTOMATE=conf):
        set_secret("DB_TOKEN", "db-token-value-0001")
        publish(
            "uses-db-secret",
            trigger_spec={"event": "x"},
            steps=[{"id": "s", "type": "python",
                    "config": {"callable": "tests.steps.echo", "kwargs": {"token": "$secret:DB_TOKEN"}}}],
        )
        emit_event("x", {"n": 1})
        drain(make_config())
        connection.ensure_connection()
        keep = connection.connection.info.backend_pid
        with psycopg.connect(pg_conninfo, autocommit=True) as killer:
            cut = [
                pid for (pid,) in killer.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid NOT IN (pg_backend_pid(), %s)", [keep],
                ).fetchall()
            ]
            for pid in cut:
                killer.execute("SELECT pg_terminate_backend(%s)", [pid])
            wait_until(
                lambda: not killer.execute("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", [cut]).fetchall(),
                30, "connections survived pg_terminate_backend",
            )
        for n in (2, 3):
            emit_event("x", {"n": n})
        drain(make_config())
    runs = ExecutionRun.objects.order_by("created_at")
    assert [r.status for r in runs] == ["SUCCEEDED"] * 3, [(r.status, r.error) for r in runs]
    assert all(r.outputs["s"]["kwargs"] == {"token": "[REDACTED]"} for r in runs)


def test_missing_secret_fails_the_step_naming_the_reference(make_config):
    publish(
        "missing",
        trigger_spec={"event": "x"},
        steps=[{"id": "s", "type": "transform", "config": {"output": "$secret:DOES_NOT_EXIST"}}],
    )
    emit_event("x", {})
    drain(make_config())
    step = StepRun.objects.get()
    assert step.status == "FAILED" and "DOES_NOT_EXIST" in step.error

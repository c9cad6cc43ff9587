"""``condition`` branches and durable ``delay`` steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from automate.core.errors import SpecError
from automate.models import ExecutionRun, OutboxJob, StepRun
from automate.runtime import emit_event
from automate.workflows import publish
from tests.aio.conftest import drain
from tests.aio.procs import WorkerProcess, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

NOOP = {"callable": "tests.steps.noop"}


def branching_steps():
    return [
        {"id": "vip", "type": "condition", "config": {
            "rule": {"==": [{"var": "event.payload.tier"}, "gold"]}, "then": ["perk"], "else": ["upsell"]}},
        {"id": "perk", "type": "python", "depends_on": ["vip"], "config": NOOP},
        {"id": "thank", "type": "python", "depends_on": ["perk"], "config": NOOP},  # only through perk
        {"id": "upsell", "type": "python", "depends_on": ["vip"], "config": NOOP},
        {"id": "log", "type": "python", "depends_on": ["perk", "upsell"], "config": NOOP},  # a join
    ]


@pytest.mark.parametrize(
    ("tier", "expected"),
    [
        ("gold", {"vip": "SUCCEEDED", "perk": "SUCCEEDED", "thank": "SUCCEEDED", "upsell": "SKIPPED", "log": "SUCCEEDED"}),
        ("tin", {"vip": "SUCCEEDED", "perk": "SKIPPED", "thank": "SKIPPED", "upsell": "SUCCEEDED", "log": "SUCCEEDED"}),
    ],
)
def test_condition_skips_the_branch_not_taken_and_what_only_it_reaches(make_config, tier, expected):
    publish("branch", trigger_spec={"event": "order"}, steps=branching_steps())
    emit_event("order", {"tier": tier})
    drain(make_config())
    run = ExecutionRun.objects.get()
    assert run.status == "SUCCEEDED"
    assert {s.step_id: s.status for s in StepRun.objects.all()} == expected
    assert run.outputs["vip"] == {"result": tier == "gold"}
    assert OutboxJob.objects.get().status == "COMPLETED"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"rule": True, "then": ["nope"]}, "steps[0].config.then[0]: unknown step 'nope'"),
        ({"rule": True, "then": ["free"]}, "steps[0].config.then[0]: step 'free' must depend on condition step 'c'"),
        ({"rule": {"bogus": [1]}, "then": ["x"]}, "steps[0].config.rule"),
        ({"rule": True}, "steps[0].config: a condition needs a non-empty 'then' or 'else'"),
        ({"rule": True, "then": ["x"], "else": ["x"]}, "steps[0].config.else: step 'x' is on both branches"),
        ({"rule": True, "then": "x"}, "steps[0].config.then: must be a list of step ids"),
        ({"then": ["x"]}, "steps[0].config.rule: required"),
        ({"rule": True, "then": ["x"], "otherwise": []}, "steps[0].config.otherwise: unknown key"),
    ],
)
def test_bad_conditions_are_refused_at_publish(config, message):
    steps = [
        {"id": "c", "type": "condition", "config": config},
        {"id": "x", "type": "python", "depends_on": ["c"], "config": NOOP},
        {"id": "free", "type": "python", "config": NOOP},
    ]
    with pytest.raises(SpecError) as info:
        publish("bad", trigger_spec={"event": "e"}, steps=steps)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "steps[0].config: give exactly one of 'seconds' or 'until'"),
        ({"seconds": 1, "until": "2030-01-01T00:00:00Z"}, "give exactly one"),
        ({"seconds": -1}, "steps[0].config.seconds: must be between 0 and"),
        ({"seconds": float("nan")}, "steps[0].config.seconds"),
        ({"seconds": True}, "steps[0].config.seconds: expected a finite number"),
        ({"until": "tomorrow"}, "steps[0].config.until: 'tomorrow' is not an ISO 8601 date-time"),
        ({"until": "2030-01-01T09:00:00"}, "steps[0].config.until: '2030-01-01T09:00:00' has no time zone"),
        ({"minutes": 5}, "steps[0].config.minutes: unknown key"),
    ],
)
def test_bad_delays_are_refused_at_publish(config, message):
    with pytest.raises(SpecError) as info:
        publish("bad", trigger_spec={"event": "e"}, steps=[{"id": "d", "type": "delay", "config": config}])
    assert message in str(info.value)


def test_delay_parks_the_job_uncounted_then_finishes(make_config):
    publish("later", trigger_spec={"event": "e"}, steps=[
        {"id": "d", "type": "delay", "config": {"seconds": "{{ event.payload.wait }}"}},
        {"id": "after", "type": "python", "depends_on": ["d"], "config": NOOP},
    ])
    emitted = datetime.now(UTC)
    emit_event("e", {"wait": 0.6})
    drain(make_config(poll_interval=30))  # woken by its own timer, not by the poll
    job = OutboxJob.objects.get()
    assert (job.status, job.attempts, job.payload) == ("COMPLETED", 1, {"parked": 1})  # the wait used no attempt
    d = StepRun.objects.get(step_id="d")
    until = datetime.fromisoformat(d.output["until"])
    assert d.status == "SUCCEEDED" and until >= emitted + timedelta(seconds=0.6)
    assert StepRun.objects.get(step_id="after").started_at >= until
    assert ExecutionRun.objects.get().status == "SUCCEEDED"


def test_a_delay_in_the_past_or_zero_does_not_wait(make_config):
    publish("now", trigger_spec={"event": "e"}, steps=[
        {"id": "d", "type": "delay", "config": {"until": "2020-01-01T00:00:00Z"}},
    ])
    emit_event("e", {})
    drain(make_config())
    assert OutboxJob.objects.get().payload is None  # never parked
    assert StepRun.objects.get().status == "SUCCEEDED"


def test_a_templated_until_that_is_bad_fails_the_step_by_name(make_config):
    publish("bad-until", trigger_spec={"event": "e"}, steps=[
        {"id": "d", "type": "delay", "config": {"until": "{{ event.payload.at }}"}},
    ])
    emit_event("e", {"at": "next tuesday"})
    drain(make_config())
    run = ExecutionRun.objects.get()
    assert run.status == "FAILED" and "step 'd' failed" in run.error and "is not an ISO 8601 date-time" in run.error


def test_a_durable_delay_survives_a_worker_restart_and_holds_no_slot(pg_conninfo, tmp_path):
    publish("durable", trigger_spec={"event": "e"}, steps=[
        {"id": "d", "type": "delay", "config": {"seconds": 5}},
        {"id": "after", "type": "python", "depends_on": ["d"], "config": NOOP},
    ])
    emit_event("e", {})
    first = WorkerProcess(pg_conninfo, "--poll-interval", "0.2", log=tmp_path / "w1.log")
    try:
        wait_until(lambda: StepRun.objects.filter(step_id="d", status="WAITING").exists(), 30, "never waited")
        # Parked: PENDING, and no worker holds it (no worker id, no lease) while it waits.
        wait_until(lambda: OutboxJob.objects.filter(status="PENDING", worker_id=None, lease_expires_at=None).exists(),
                   30, "never parked")
        first.terminate()
        assert first.wait(30) == 0, first.output
    finally:
        first.stop()
    until = datetime.fromisoformat(StepRun.objects.get(step_id="d").output["until"])
    second = WorkerProcess(pg_conninfo, "--drain", "--poll-interval", "0.2", log=tmp_path / "w2.log")
    try:
        assert second.wait(60) == 0, second.output
    finally:
        second.stop()
    assert ExecutionRun.objects.get().status == "SUCCEEDED"
    d, after = StepRun.objects.get(step_id="d"), StepRun.objects.get(step_id="after")
    assert d.status == "SUCCEEDED" and d.attempt == 1
    assert after.started_at >= until
    assert OutboxJob.objects.get().status == "COMPLETED"

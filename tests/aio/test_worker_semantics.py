"""Concurrency, fencing, tracing and recovery details of the worker (in-process, real database)."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry import trace

from automate.aio.store import FlushBatch, PgStore
from automate.models import ExecutionRun, OutboxJob, StepRun
from automate.runtime import emit_event
from automate.workflows import publish
from tests.aio.conftest import drain

pytestmark = pytest.mark.django_db(transaction=True)

SLEEP = {"callable": "tests.steps.asleep", "kwargs": {"seconds": 0.3}}


def _overlap(a: StepRun, b: StepRun) -> bool:
    return a.started_at < b.finished_at and b.started_at < a.finished_at


def test_independent_steps_run_concurrently(make_config):
    publish(
        "fan",
        trigger_spec={"event": "x"},
        steps=[
            {"id": "a", "type": "python", "config": SLEEP},
            {"id": "b", "type": "python", "config": SLEEP},
            {"id": "c", "type": "python", "depends_on": ["a", "b"], "config": SLEEP},
        ],
    )
    emit_event("x", {})
    drain(make_config())
    rows = {s.step_id: s for s in StepRun.objects.all()}
    assert _overlap(rows["a"], rows["b"])
    assert rows["c"].started_at >= max(rows["a"].finished_at, rows["b"].finished_at)


def test_semaphore_bounds_concurrent_steps(make_config):
    publish(
        "fan",
        trigger_spec={"event": "x"},
        steps=[{"id": "a", "type": "python", "config": SLEEP}, {"id": "b", "type": "python", "config": SLEEP}],
    )
    emit_event("x", {})
    drain(make_config(concurrency=1))
    a, b = StepRun.objects.order_by("started_at")
    assert not _overlap(a, b)


def test_fenced_writes_cannot_overwrite_a_new_owner(pg_conninfo):
    publish("p", trigger_spec={"event": "x"}, steps=[{"id": "t", "type": "transform", "config": {"output": 1}}])
    emit_event("x", {})

    async def scenario() -> tuple[set, set]:
        store = PgStore(pg_conninfo)
        await store.open()
        try:
            [job] = await store.claim("worker-a", 10, 30)
            # worker-a stalls, its lease expires and worker-b takes the job over:
            async with store.pool.connection() as conn:
                await conn.execute(
                    "UPDATE automate_outbox_job SET worker_id = 'worker-b', attempts = attempts + 1, "
                    "claim_token = claim_token + 1 WHERE id = %s",
                    [job.id],
                )
            stale = FlushBatch()
            stale.finished[job.key] = ("FAILED", "stale result from worker-a")
            owned_a = await store.flush("worker-a", stale)
            kept_a = await store.extend_leases("worker-a", [job.key], 30)
            return owned_a, kept_a
        finally:
            await store.close()

    owned_a, kept_a = asyncio.run(scenario())
    assert owned_a == set() and kept_a == set()
    job = OutboxJob.objects.get()
    assert (job.status, job.worker_id, job.last_error) == ("CLAIMED", "worker-b", "")


def test_expired_lease_is_recovered_or_dead_lettered(pg_conninfo):
    for i in range(2):
        emit_event("x", {"i": i})
    OutboxJob.objects.filter(event__payload__i=0).update(max_attempts=1)

    async def scenario() -> list[tuple[int, str]]:
        store = PgStore(pg_conninfo)
        await store.open()
        try:
            await store.claim("dead-worker", 10, 0.01)
            async with store.pool.connection() as conn:  # wait until the database sees the leases expired
                expired = "SELECT bool_and(lease_expires_at < clock_timestamp()) FROM automate_outbox_job"
                while not (await (await conn.execute(expired)).fetchone())[0]:
                    await asyncio.sleep(0.01)
            return await store.recover_expired()
        finally:
            await store.close()

    recovered = dict(asyncio.run(scenario()))
    by_i = {j.event.payload["i"]: j for j in OutboxJob.objects.select_related("event")}
    assert recovered == {by_i[0].id: "FAILED", by_i[1].id: "PENDING"}
    assert "lease expired on worker dead-worker (no attempts left)" in by_i[0].last_error
    assert by_i[1].worker_id is None and by_i[1].attempts == 1


def test_run_continues_the_emitting_trace(make_config, spans):
    publish(
        "traced",
        trigger_spec={"event": "x"},
        steps=[
            {"id": "a", "type": "transform", "config": {"output": 1}},
            {"id": "b", "type": "transform", "depends_on": ["a"], "config": {"output": 2}},
        ],
    )
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("POST /orders") as request_span:
        emit_event("x", {})
        trace_id = format(request_span.get_span_context().trace_id, "032x")
        request_span_id = request_span.get_span_context().span_id
    drain(make_config())
    run = ExecutionRun.objects.get()
    assert run.trace_id == trace_id
    finished = spans.get_finished_spans()
    [emit_span] = [s for s in finished if s.name == "automate.emit"]
    assert emit_span.parent.span_id == request_span_id  # the emit span is the request's child
    [run_span] = [s for s in finished if s.name == "automate.run"]
    assert run_span.attributes["automate.workflow"] == "traced"
    assert run_span.parent.span_id == emit_span.context.span_id  # and the run is the emit span's
    steps = {s.attributes["automate.step"]: s for s in finished if s.name == "automate.step"}
    assert set(steps) == {"a", "b"}
    for span in steps.values():
        assert format(span.context.trace_id, "032x") == trace_id
        assert span.parent.span_id == run_span.context.span_id
        assert span.attributes["automate.connector"] == "transform"
        assert span.attributes["automate.outcome"] == "succeeded"

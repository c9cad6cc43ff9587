"""Fault isolation (issue 8): one bad job, one lost lease or one shutdown never kills the worker, stalls
a job, or runs a step twice. Each scenario is a regression test of a reproduced failure, run by real
worker processes against the real database where the failure was seen there."""

from __future__ import annotations

import asyncio
import collections
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from django.test import override_settings

from automate.aio.matcher import WorkflowCache
from automate.aio.recorder import Recorder
from automate.aio.store import PgStore, RunRow, StepRow
from automate.aio.worker import Worker
from automate.models import ExecutionRun, OutboxJob, StepRun, WorkflowVersion
from automate.runtime import emit_event
from automate.testing import InMemoryStore
from automate.workflows import publish
from tests.aio.conftest import drain
from tests.aio.procs import WorkerProcess, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

POISONS = {  # kind -> what the stored error must name
    "nul": "NUL",
    "surrogate": "surrogate",
    "nan": "NaN",
    "deep": "deep",
    "huge": "max_output_bytes",
}


def marks(path) -> collections.Counter[str]:
    return collections.Counter(path.read_text().split()) if path.exists() else collections.Counter()


def test_poison_outputs_fail_only_their_step_and_the_worker_lives(pg_conninfo, tmp_path):
    publish(
        "poison",
        trigger_spec={"event": "poison"},
        steps=[{"id": "bad", "type": "python", "config": {
            "callable": "tests.steps.poison",
            "kwargs": {"kind": "{{ event.payload.kind }}", "how": "{{ event.payload.how }}"},
        }}],
    )
    publish(
        "healthy",
        trigger_spec={"event": "healthy"},
        steps=[{"id": "ok", "type": "python", "config": {"callable": "tests.steps.asleep", "kwargs": {"seconds": 0.3}}}],
    )
    healthy = [emit_event("healthy", {"i": i}) for i in range(5)]
    poisoned = {emit_event("poison", {"kind": k, "how": how}): (k, how) for k in POISONS for how in ("return", "raise")}
    worker = WorkerProcess(pg_conninfo, "--drain", "--poll-interval", "0.2", log=tmp_path / "w.log")
    try:
        assert worker.wait(90) == 0, worker.output  # drained: the worker lived through every poison
    finally:
        worker.stop()
    for event_id in healthy:
        assert OutboxJob.objects.get(event_id=event_id).status == "COMPLETED"
    for event_id, (kind, how) in poisoned.items():
        job = OutboxJob.objects.get(event_id=event_id)
        run = ExecutionRun.objects.get(event_id=event_id)
        assert (job.status, run.status, job.attempts) == ("FAILED", "FAILED", 1), (kind, how, job.last_error)
        assert "step 'bad' failed" in job.last_error and "step 'bad' failed" in run.error
        if how == "return":  # the output is refused by name; a raised message is stored, escaped
            assert POISONS[kind] in job.last_error, (kind, job.last_error)
        step = StepRun.objects.get(run=run)
        assert step.status == "FAILED" and step.output is None and "\x00" not in step.error


def test_a_row_the_database_refuses_fails_only_its_job_in_the_group_commit(pg_conninfo):
    """The recorder's last line: a row that slipped past every check is isolated by bisection."""
    publish("w", trigger_spec={"event": "x"}, steps=[{"id": "t", "type": "transform", "config": {"output": 1}}])
    version_id = WorkflowVersion.objects.get().pk
    for i in range(5):
        emit_event("x", {"i": i})

    async def scenario():
        store = PgStore(pg_conninfo)
        await store.open()
        lost: set = set()
        recorder = Recorder(store, "w1", on_lost=lost.update)
        try:
            jobs = await store.claim("w1", 10, 30)
            now = datetime.now(UTC)
            futures = {}
            for n, job in enumerate(jobs):
                run_id = uuid.uuid4()
                output = "bad\x00row" if n == 2 else {"n": n}
                recorder.run(RunRow(run_id, version_id, job.event_id, job.id, job.token, "SUCCEEDED",
                                    "", {"t": output}, "", now, now))
                recorder.step(StepRow(run_id, "t", 1, job.id, job.token, "SUCCEEDED", now, now, output))
                futures[job.id] = recorder.finish(job.key, "COMPLETED")
            await recorder.flush()
            return jobs[2].id, {jid: f.result() for jid, f in futures.items()}, lost
        finally:
            await store.close()

    bad_id, written, lost = asyncio.run(scenario())
    assert {jid for jid, ok in written.items() if not ok} == {bad_id}
    assert {k[0] for k in lost} == {bad_id}
    for job in OutboxJob.objects.all():
        run = ExecutionRun.objects.get(event_id=job.event_id)
        if job.id == bad_id:
            assert (job.status, run.status, run.outputs) == ("FAILED", "FAILED", {})
            assert "could not record the job's progress" in job.last_error and "Unicode" in job.last_error
            assert not StepRun.objects.filter(run=run).exists()
        else:
            assert (job.status, run.status) == ("COMPLETED", "SUCCEEDED")
            assert StepRun.objects.get(run=run).status == "SUCCEEDED"


def test_a_when_rule_that_raises_fails_its_steps_in_every_matching_workflow(pg_conninfo, tmp_path):
    big_cat = {"cat": [{"var": "event.payload.big"}, {"var": "event.payload.big"}]}
    for slug in ("first", "second"):
        publish(slug, trigger_spec={"event": "big"}, steps=[
            {"id": "guarded", "type": "transform", "when": big_cat, "config": {"output": 1}},
        ])
    publish("plain", trigger_spec={"event": "big"}, steps=[{"id": "t", "type": "transform", "config": {"output": 2}}])
    event_id = emit_event("big", {"big": "x" * 600_000})
    worker = WorkerProcess(pg_conninfo, "--drain", "--poll-interval", "0.2", log=tmp_path / "w.log")
    try:
        assert worker.wait(60) == 0, worker.output
    finally:
        worker.stop()
    job = OutboxJob.objects.get(event_id=event_id)
    assert (job.status, job.attempts) == ("FAILED", 1)
    runs = {r.workflow_version.workflow.slug: r for r in ExecutionRun.objects.select_related("workflow_version__workflow")}
    assert runs["plain"].status == "SUCCEEDED"
    for slug in ("first", "second"):
        assert runs[slug].status == "FAILED"
        assert "step 'guarded' failed: when: RuleLimitError" in runs[slug].error
        step = StepRun.objects.get(run=runs[slug])
        assert step.status == "FAILED" and step.error.startswith("when: RuleLimitError")
    assert job.last_error.count("when: RuleLimitError") == 2


class _BrokenCatalogue(InMemoryStore):
    """The database fails every read of the workflows: a failure of the runtime, not of the workflow."""

    async def live_versions(self):
        raise psycopg.OperationalError("server closed the connection unexpectedly")


def test_a_runtime_error_around_a_job_is_a_counted_retry_that_dead_letters_with_its_cause():
    from automate.aio.config import WorkerConfig

    store = _BrokenCatalogue()
    job_id = store.add_event("x", {}, max_attempts=2)
    cfg = WorkerConfig(conninfo="", drain=True, poll_interval=0.05, lease_seconds=5)
    asyncio.run(asyncio.wait_for(Worker(cfg, store, listen=False).run(), 30))
    job = store.job(job_id)
    assert (job.status, job.attempts) == ("FAILED", 2)
    assert "planning the job: OperationalError: server closed the connection" in job.last_error
    assert "no attempts left" in job.last_error


def test_a_job_released_at_shutdown_resumes_its_run_and_keeps_completed_steps(pg_conninfo, tmp_path):
    log = tmp_path / "marks"
    publish("two", trigger_spec={"event": "two"}, steps=[
        {"id": "a", "type": "python", "config": {"callable": "tests.steps.mark", "kwargs": {"path": str(log)}}},
        {"id": "b", "type": "python", "depends_on": ["a"], "timeout_seconds": 120, "config": {
            "callable": "tests.steps.slow_first_time", "kwargs": {"path": str(log), "seconds": 60}}},
    ])
    event_id = emit_event("two", {})
    first = WorkerProcess(pg_conninfo, "--grace", "0.5", "--lease-seconds", "300", log=tmp_path / "w1.log")
    try:
        wait_until(lambda: sum(1 for m in marks(log) if m.endswith(":b")), 30, "step b never started")
        wait_until(lambda: StepRun.objects.filter(step_id="a", status="SUCCEEDED").exists(), 30, "a not recorded")
        first.terminate()
        assert first.wait(30) == 0, first.output
    finally:
        first.stop()
    job = OutboxJob.objects.get(event_id=event_id)
    assert (job.status, job.attempts) == ("PENDING", 0)  # released, uncounted
    second = WorkerProcess(pg_conninfo, "--drain", "--poll-interval", "0.2", log=tmp_path / "w2.log")
    try:
        assert second.wait(60) == 0, second.output
    finally:
        second.stop()
    assert "UniqueViolation" not in second.output
    run = ExecutionRun.objects.get()  # one run for the event and version, continued
    assert run.status == "SUCCEEDED"
    assert OutboxJob.objects.get(event_id=event_id).status == "COMPLETED"
    counts = collections.Counter(m.split(":")[1] for m in marks(log).elements())
    assert counts == {"a": 1, "b": 2}  # a ran once; b was in flight at the shutdown and ran again


def test_a_resumed_job_continues_only_the_runs_it_started(pg_conninfo, tmp_path):
    flaky = tmp_path / "flaky"
    publish("versioned", trigger_spec={"event": "v"}, steps=[
        {"id": "s", "type": "python", "max_retries": 3, "retry": {"base_seconds": 60, "jitter": "none"},
         "config": {"callable": "tests.steps.flaky", "kwargs": {"path": str(flaky), "failures": 1}}},
    ])
    v1 = WorkflowVersion.objects.get()
    event_id = emit_event("v", {})
    first = WorkerProcess(pg_conninfo, "--poll-interval", "0.2", log=tmp_path / "w1.log")
    try:
        wait_until(lambda: (OutboxJob.objects.get(event_id=event_id).payload or {}).get("parked") == 1, 30,
                   "the job was never parked")
        first.terminate()
        assert first.wait(30) == 0, first.output
    finally:
        first.stop()
    publish("versioned", trigger_spec={"event": "v"}, steps=[
        {"id": "s2", "type": "transform", "config": {"output": "v2"}},
    ])
    OutboxJob.objects.filter(event_id=event_id).update(available_at=datetime.now(UTC))  # the wait is over
    second = WorkerProcess(pg_conninfo, "--drain", "--poll-interval", "0.2", log=tmp_path / "w2.log")
    try:
        assert second.wait(60) == 0, second.output
    finally:
        second.stop()
    run = ExecutionRun.objects.get()  # v2 was published after the event was matched: it does not run
    assert (run.workflow_version_id, run.status) == (v1.pk, "SUCCEEDED")
    assert list(StepRun.objects.order_by("attempt").values_list("attempt", "status")) == [
        (1, "RETRYING"), (2, "SUCCEEDED"),
    ]


def test_a_worker_that_wins_back_its_own_job_runs_it_once_more_and_keeps_its_lease(pg_conninfo, make_config, tmp_path):
    """An outage longer than the lease: the job is recovered and this same worker claims it again. The
    stale task is cancelled and fenced out; the new claim's lease is extended while its step runs."""
    log = tmp_path / "marks"
    publish("slow", trigger_spec={"event": "slow"}, steps=[
        {"id": "s", "type": "python", "timeout_seconds": 60,
         "config": {"callable": "tests.steps.mark", "kwargs": {"path": str(log), "sleep": 6}}},
    ])
    event_id = emit_event("slow", {})
    cfg = make_config(drain=False, lease_seconds=2.0, poll_interval=0.1)  # the step outlasts three leases

    async def scenario() -> Worker:
        worker = Worker(cfg)
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.to_thread(wait_until, lambda: len(marks(log)) == 1, 30, "step never started")
            async with await psycopg.AsyncConnection.connect(pg_conninfo, autocommit=True) as conn:
                # What the reaper of another worker does once the lease has expired during an outage:
                await conn.execute(
                    "UPDATE automate_outbox_job SET status = 'PENDING', worker_id = NULL, lease_expires_at = NULL "
                    "WHERE event_id = %s", [event_id])
                await conn.execute("NOTIFY automate_outbox")
            await asyncio.to_thread(
                wait_until, lambda: OutboxJob.objects.get(event_id=event_id).status == "COMPLETED", 30,
                "the job never completed")
            await asyncio.sleep(3)  # longer than the lease: a lease that was not extended would be recovered
            return worker
        finally:
            worker.request_stop()
            await asyncio.wait_for(task, 30)

    worker = asyncio.run(scenario())
    assert worker.stats.lost >= 1
    assert sum(marks(log).values()) == 2  # once for the lost claim (in flight), once for the new one
    job = OutboxJob.objects.get(event_id=event_id)
    assert (job.status, job.claim_token) == ("COMPLETED", 2)
    assert StepRun.objects.filter(status="SUCCEEDED").count() == 1
    assert ExecutionRun.objects.get().status == "SUCCEEDED"


def test_a_disabled_worker_touches_no_job(pg_conninfo, make_config):
    event_id = emit_event("x", {})
    OutboxJob.objects.filter(event_id=event_id).update(
        status="CLAIMED", worker_id="dead", lease_expires_at=datetime(2000, 1, 1, tzinfo=UTC))
    fresh = emit_event("x", {})

    async def scenario() -> None:
        worker = Worker(make_config(drain=False, enabled=False, poll_interval=0.05, lease_seconds=0.2))
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(1.0)  # many reaper and claim intervals
        worker.request_stop()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    assert OutboxJob.objects.get(event_id=event_id).status == "CLAIMED"  # not recovered
    assert OutboxJob.objects.get(event_id=fresh).status == "PENDING"  # not claimed


def test_enabled_is_read_at_each_claim(make_config):
    with override_settings(DJANGO_AUTOMATE={"ENABLED": False, "POLICY": {"python_allowlist": ["tests.steps.*"]}}):
        emit_event("x", {})

        async def scenario() -> Worker:
            worker = Worker(make_config(drain=False, poll_interval=0.05))
            task = asyncio.create_task(worker.run())
            await asyncio.sleep(0.5)
            worker.request_stop()
            await asyncio.wait_for(task, 10)
            return worker

        assert asyncio.run(scenario()).stats.claimed == 0
    assert OutboxJob.objects.get().status == "PENDING"


def test_prefetch_zero_holds_exactly_concurrency_jobs(pg_conninfo, make_config):
    publish("sleepy", trigger_spec={"event": "s"}, steps=[
        {"id": "z", "type": "python", "config": {"callable": "tests.steps.asleep", "kwargs": {"seconds": 0.3}}},
    ])
    for _ in range(6):
        emit_event("s", {})
    cfg = make_config(concurrency=2, prefetch=0, batch_size=10)

    async def scenario() -> int:
        most = 0
        task = asyncio.create_task(Worker(cfg).run())
        async with await psycopg.AsyncConnection.connect(pg_conninfo, autocommit=True) as conn:
            while not task.done():
                cur = await conn.execute("SELECT count(*) FROM automate_outbox_job WHERE status = 'CLAIMED'")
                most = max(most, (await cur.fetchone())[0])
                await asyncio.sleep(0.01)
        await task
        return most

    most = asyncio.run(scenario())
    assert most == 2
    assert set(OutboxJob.objects.values_list("status", flat=True)) == {"COMPLETED"}


def test_an_invalidation_during_a_reload_is_not_lost():
    class SlowCatalogue(InMemoryStore):
        gate: asyncio.Event | None = None

        async def live_versions(self):
            rows = await super().live_versions()
            if self.gate is not None:
                await self.gate.wait()
            return rows

    async def scenario() -> int:
        store = SlowCatalogue()
        store.gate = asyncio.Event()
        cache = WorkflowCache(store, max_age=3600)
        reload = asyncio.create_task(cache.live())
        await asyncio.sleep(0)  # the reload has read... and a NOTIFY arrives before it finishes
        cache.invalidate()
        store.gate.set()
        await reload
        store.gate = None
        await cache.live()  # must read again: the first load may predate the change
        return cache.reloads

    assert asyncio.run(scenario()) == 2


def test_a_resolved_secret_never_reaches_a_span(make_config, spans, monkeypatch):
    secret = "sk-live-4f9a1c0e7b2d5a8e3f6c9b0a"
    monkeypatch.setenv("AUTOMATE_SPAN_TOKEN", secret)
    publish("leaky", trigger_spec={"event": "x"}, steps=[
        {"id": "boom", "type": "python", "config": {
            "callable": "tests.steps.fail_permanently", "kwargs": {"message": "$secret:SPAN_TOKEN"}}},
    ])
    emit_event("x", {})
    drain(make_config())
    finished = spans.get_finished_spans()
    step = next(s for s in finished if s.name == "automate.step" and s.attributes["automate.step"] == "boom")
    assert step.status.status_code.name == "ERROR"
    [event] = [e for e in step.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"].startswith("ValueError: ")
    for span in finished:
        texts = [span.status.description or "", *map(str, span.attributes.values())]
        for ev in span.events:
            texts += [str(v) for v in ev.attributes.values()]
        assert not any(secret in t for t in texts), span.name
    assert secret not in StepRun.objects.get().error and secret not in ExecutionRun.objects.get().error


class _ReleaseFails(InMemoryStore):
    async def release(self, worker_id, keys):
        raise psycopg.OperationalError("connection to server lost")


def test_a_release_that_fails_at_shutdown_is_logged(caplog):
    from automate.aio.config import WorkerConfig

    store = _ReleaseFails()
    store.add_version(1, "stuck", {"event": "x"}, [
        {"id": "s", "type": "python", "timeout_seconds": 600,
         "config": {"callable": "tests.steps.asleep", "kwargs": {"seconds": 300}}},
    ])
    job_id = store.add_event("x", {})
    cfg = WorkerConfig(conninfo="", poll_interval=0.05, shutdown_grace=0.1)

    async def scenario() -> None:
        worker = Worker(cfg, store, listen=False)
        task = asyncio.create_task(worker.run())
        while not worker._inflight:
            await asyncio.sleep(0.01)
        worker.request_stop()
        await asyncio.wait_for(task, 10)

    with caplog.at_level("WARNING", logger="automate.aio.worker"):
        asyncio.run(scenario())
    [record] = [r for r in caplog.records if r.getMessage().startswith("automate.worker.release_failed")]
    assert record.jobs == [job_id] and "connection to server lost" in record.error
    assert store.job(job_id).status == "CLAIMED"  # left to its lease, as the log line says


def test_the_worker_closes_its_loops_http_clients_when_it_stops(make_config):
    from automate.connectors.http import client as http_client
    from automate.connectors.llm import client as llm_client

    async def scenario():
        shared, llm = http_client.shared_client(), llm_client.get_client()  # what this loop's steps use
        await Worker(make_config()).run()
        return shared, llm, asyncio.get_running_loop() in http_client._clients

    shared, llm, still_registered = asyncio.run(scenario())
    assert shared.is_closed and llm.is_closed and not still_registered

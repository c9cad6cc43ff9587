"""One trace from the HTTP request that emits an event, through a real worker process, to the last
outgoing call of the workflow, exported over OTLP/HTTP to a real receiver started by the test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from automate.models import ExecutionRun, OutboxJob
from automate.workflows import publish
from tests.aio.procs import ROOT, WorkerProcess, wait_until
from tests.live_server import UvicornServer
from tests.observability.lines import ecs_records
from tests.observability.servers import Downstream, OtlpReceiver, servers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
SETTINGS = "tests.observability.server_settings"

SERVER, CONSUMER, INTERNAL, PRODUCER = 2, 5, 1, 4  # opentelemetry.proto SpanKind values


@pytest.fixture
def otel(settings) -> Iterator[tuple[OtlpReceiver, Downstream]]:
    from tests.observability import server_settings

    settings.DJANGO_AUTOMATE = server_settings.DJANGO_AUTOMATE  # publish() checks the same allowlist
    yield from servers()


def _otel_env(receiver: OtlpReceiver, service: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_SERVICE_NAME": service,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }


def test_one_trace_from_the_request_to_the_last_step(pg_conninfo, otel, tmp_path, monkeypatch):
    receiver, downstream = otel
    publish("traced-order", trigger_spec={"event": "order.placed"}, steps=[
        {"id": "prepare", "type": "transform", "config": {"output": {"id": "{{ event.payload.order.id }}"}}},
        {"id": "notify", "type": "http", "depends_on": ["prepare"], "config": {
            "method": "POST", "url": f"{downstream.url}/hook", "json": {"order": "{{ steps.prepare.output.id }}"}}},
    ])
    web = UvicornServer(
        "tests.observability.asgi:application", cwd=ROOT, log=tmp_path / "web.log",
        env={"DJANGO_SETTINGS_MODULE": SETTINGS, "AUTOMATE_TEST_WORKER_DATABASE_URL": pg_conninfo,
             "PYTHONPATH": str(ROOT), **_otel_env(receiver, "shop-web")},
    )
    try:
        response = httpx.post(f"{web.url}/orders", json={"id": 7},
                              headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}, timeout=30)
        assert response.status_code == 201, response.text + web.output
        wait_until(lambda: receiver.named("automate.emit"), 30, f"no emit span exported:\n{web.output}")
    finally:
        web.stop()

    for key, value in _otel_env(receiver, "shop-worker").items():
        monkeypatch.setenv(key, value)
    worker = WorkerProcess(pg_conninfo, "--settings", SETTINGS, "--drain", log=tmp_path / "worker.log")
    try:
        assert worker.wait(90) == 0, worker.output  # --drain: exits once the outbox is empty
    finally:
        worker.stop()
    assert OutboxJob.objects.get().status == "COMPLETED", worker.output
    # The worker exited: its last spans were flushed by shutdown_tracing() on the way out.
    wait_until(lambda: len(receiver.named("automate.step")) == 2, 10, f"step spans missing:\n{worker.output}")

    spans = receiver.all()
    server = next(s for s in spans if s.kind == SERVER)
    [emit] = receiver.named("automate.emit")
    [run] = receiver.named("automate.run")
    steps = {s.attributes["automate.step"]: s for s in receiver.named("automate.step")}

    # One trace id, the caller's, from the request to the last step.
    assert {s.trace_id for s in spans} == {CALLER_TRACE}
    # The parent links: caller -> SERVER (web) -> automate.emit -> automate.run (worker) -> each step.
    assert server.parent_span_id == CALLER_SPAN and server.service == "shop-web"
    assert emit.parent_span_id == server.span_id and emit.kind == PRODUCER and emit.service == "shop-web"
    assert emit.attributes["automate.event_type"] == "order.placed"
    assert run.parent_span_id == emit.span_id and run.kind == CONSUMER and run.service == "shop-worker"
    assert run.attributes["automate.workflow"] == "traced-order"
    assert set(steps) == {"prepare", "notify"}
    for step_id, span in steps.items():
        assert span.parent_span_id == run.span_id and span.kind == INTERNAL
        assert span.attributes["automate.workflow"] == "traced-order"
        assert span.attributes["automate.workflow_version"] == 1
        assert span.attributes["automate.attempt"] == 1
        assert span.attributes["automate.outcome"] == "succeeded"
        assert span.attributes["automate.connector"] == ("transform" if step_id == "prepare" else "http")

    # The downstream service, called by the http connector, saw the trace context of the last step's span.
    [call] = downstream.calls
    assert call["traceparent"] == f"00-{CALLER_TRACE}-{steps['notify'].span_id}-01"

    # The run records the trace id the backend shows.
    assert ExecutionRun.objects.get().trace_id == CALLER_TRACE

    # The worker's log lines carry the trace too: the banner has no span, its lines inside a run do.
    records = ecs_records(worker.output)
    assert any(r.get("event", {}).get("action") == "automate.worker.started" for r in records), worker.output


def test_a_step_failure_and_its_retries_are_on_the_spans(pg_conninfo, otel, tmp_path, monkeypatch):
    """A retried, then failed step: one span per attempt with status ERROR, a retry event on the run
    span for each retry, and the run span failed too."""
    receiver, _downstream = otel
    publish("failing", trigger_spec={"event": "order.placed"}, steps=[
        {"id": "boom", "type": "python", "max_retries": 1, "retry": {"kind": "fixed", "base_seconds": 0.01, "max_seconds": 0.01},
         "config": {"callable": "tests.steps.flaky", "kwargs": {"path": str(tmp_path / "n"), "failures": 5}}},
    ])
    from automate.runtime import emit_event

    emit_event("order.placed", {})
    for key, value in _otel_env(receiver, "shop-worker").items():
        monkeypatch.setenv(key, value)
    worker = WorkerProcess(pg_conninfo, "--settings", SETTINGS, "--drain", log=tmp_path / "worker.log")
    try:
        assert worker.wait(90) == 0, worker.output
    finally:
        worker.stop()
    wait_until(lambda: receiver.named("automate.run"), 10, worker.output)
    [run] = receiver.named("automate.run")
    attempts = sorted(receiver.named("automate.step"), key=lambda s: s.attributes["automate.attempt"])
    assert [s.attributes["automate.attempt"] for s in attempts] == [1, 2]
    assert all(s.status_code == 2 and s.attributes["automate.outcome"] == "error" for s in attempts)  # ERROR
    assert all(s.parent_span_id == run.span_id for s in attempts)
    retries = [attrs for name, attrs in run.events if name == "automate.step.retry_scheduled"]
    assert [(r["automate.step"], r["automate.attempt"]) for r in retries] == [("boom", 1)]
    assert run.status_code == 2 and "boom" in run.status_message
    # Without a caller's context the run starts its own trace, and the run records its id.
    stored = ExecutionRun.objects.get()
    assert stored.trace_id == run.trace_id
    # The worker's ECS line for the retry: its action, the run's trace and span, the run and the step.
    [line] = [r for r in ecs_records(worker.output) if r.get("event", {}).get("action") == "automate.step.retry_scheduled"]
    assert line["trace"]["id"] == run.trace_id and line["span"]["id"] == run.span_id
    assert line["automate"]["run_id"] == str(stored.id) and line["automate"]["step"] == "boom"
    assert line["automate"]["attempt"] == 1 and line["log.level"] == "info"

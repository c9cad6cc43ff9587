"""Prometheus metrics: a real worker process's /metrics after a known workload, and the Django view."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import httpx
import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from automate.models import OutboxJob
from automate.observability import metrics as web_metrics
from automate.runtime import emit_event
from automate.workflows import publish
from tests.aio.procs import ROOT, WorkerProcess, wait_until
from tests.live_server import free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

SETTINGS = "tests.observability.server_settings"
UUID_RX = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")
FAST_RETRY = {"kind": "fixed", "base_seconds": 0.01, "max_seconds": 0.01}


@pytest.fixture
def observed(settings):
    from tests.observability import server_settings

    settings.DJANGO_AUTOMATE = server_settings.DJANGO_AUTOMATE  # METRICS_EXPORT, token, allowlist


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scrape: dict, name: str, **labels: str) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


def test_worker_metrics_after_a_known_workload(pg_conninfo, observed, tmp_path):
    publish("metered", trigger_spec={"event": "order.placed"},
            steps=[{"id": "t", "type": "transform", "config": {"output": 1}}])
    publish("retried", trigger_spec={"event": "order.retry"}, steps=[
        {"id": "r", "type": "python", "retry": FAST_RETRY, "config": {
            "callable": "tests.steps.flaky", "kwargs": {"path": str(tmp_path / "r"), "failures": 1}}}])
    publish("broken", trigger_spec={"event": "order.broken"}, steps=[
        {"id": "b", "type": "python", "config": {"callable": "tests.steps.fail_permanently"}}])
    publish("parked", trigger_spec={"event": "order.later"}, steps=[  # retried in an hour: parked in the outbox
        {"id": "p", "type": "python", "retry": {"kind": "fixed", "base_seconds": 3600, "max_seconds": 3600},
         "config": {"callable": "tests.steps.flaky", "kwargs": {"path": str(tmp_path / "p"), "failures": 5}}}])
    port = free_port()
    worker = WorkerProcess(pg_conninfo, "--settings", SETTINGS, "--metrics-port", str(port),
                           "--metrics-addr", "127.0.0.1", log=tmp_path / "worker.log")
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        worker.wait_for_output("automate.metrics.serving")
        worker.wait_for_output("automate-aio-worker")  # the banner: the claim loop is about to start
        for i in range(5):
            emit_event("order.placed", {"i": i})
        for event_type in ("order.retry", "order.broken", "order.later", "nobody.listens", "nobody.listens"):
            emit_event(event_type, {})

        def settled() -> bool:
            done = OutboxJob.objects.filter(status__in=["COMPLETED", "FAILED"]).count()
            parked = OutboxJob.objects.filter(status="PENDING", available_at__gt=timezone.now()).count()
            return done == 9 and parked == 1

        wait_until(settled, 60, f"the workload never settled:\n{worker.output}")
        # A step's metrics are recorded before its job's completion is committed; the claims, at the claim.
        wait_until(lambda: value(samples(httpx.get(url).text), "automate_jobs_claimed_total") == 10, 10)
        text = httpx.get(url, timeout=10).text
    finally:
        worker.stop()
    scrape = samples(text)

    assert value(scrape, "automate_jobs_claimed_total") == 10
    assert value(scrape, "automate_claim_batch_size_sum") == 10
    assert value(scrape, "automate_claim_batch_size_count") >= 1
    assert value(scrape, "automate_runs_total", workflow="metered", status="SUCCEEDED") == 5
    assert value(scrape, "automate_runs_total", workflow="retried", status="SUCCEEDED") == 1
    assert value(scrape, "automate_runs_total", workflow="broken", status="FAILED") == 1
    assert value(scrape, "automate_runs_total", workflow="parked", status="SUCCEEDED") == 0  # not ended
    assert value(scrape, "automate_step_attempts_total", connector="transform", outcome="succeeded") == 5
    assert value(scrape, "automate_step_attempts_total", connector="python", outcome="retrying") == 2
    assert value(scrape, "automate_step_attempts_total", connector="python", outcome="succeeded") == 1
    assert value(scrape, "automate_step_attempts_total", connector="python", outcome="failed") == 1
    assert value(scrape, "automate_step_retries_total", connector="python") == 2
    assert value(scrape, "automate_step_duration_seconds_count", connector="transform") == 5
    assert value(scrape, "automate_step_duration_seconds_count", connector="python") == 4
    assert value(scrape, "automate_steps_in_flight") == 0
    assert value(scrape, "automate_wakeups_total", source="notify") >= 1  # the emits after start-up woke it
    assert value(scrape, "automate_listener_reconnects_total") == 0
    # The outbox, read from the database: the parked job is scheduled, nothing is due or claimed.
    assert value(scrape, "automate_outbox_depth", state="scheduled") == 1
    assert value(scrape, "automate_outbox_depth", state="due") == 0
    assert value(scrape, "automate_outbox_depth", state="claimed") == 0
    assert value(scrape, "automate_outbox_oldest_due_age_seconds") == 0
    assert ("automate_llm_spend_usd_today", (("state", "spent"),)) in scrape  # from the database, here too
    # No id in any label.
    for (_name, labels), _v in scrape.items():
        for _k, v in labels:
            assert not UUID_RX.search(v), labels


def test_metrics_port_needs_metrics_export_and_a_free_port(pg_conninfo, tmp_path):
    def run(*args: str, settings: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "automate.aio", "--settings", settings, "--drain", *args],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
            env={**__import__("os").environ, "AUTOMATE_TEST_WORKER_DATABASE_URL": pg_conninfo, "PYTHONPATH": str(ROOT)},
        )

    off = run("--metrics-port", "9999", settings="tests.settings")
    assert off.returncode == 2
    assert "--metrics-port 9999 given, but DJANGO_AUTOMATE.METRICS_EXPORT is False" in off.stderr
    bad = run("--metrics-port", "70000", settings=SETTINGS)
    assert bad.returncode == 2 and "--metrics-port must be between 0 and 65535, got 70000" in bad.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run("--metrics-port", str(port), "--metrics-addr", "127.0.0.1", settings=SETTINGS)
    assert busy.returncode == 2 and f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}" in busy.stderr
    zero = run("--metrics-port", "0", settings=SETTINGS)  # 0: metrics exported by nobody, the worker runs
    assert zero.returncode == 0, zero.stdout + zero.stderr
    assert "automate.metrics.serving" not in zero.stdout


# -- the Django view ---------------------------------------------------------------------------------------
@pytest.mark.urls("tests.observability.urls")
def test_the_view_is_absent_while_metrics_export_is_false(client, settings):
    settings.DJANGO_AUTOMATE = {"METRICS_EXPORT": False, "METRICS_TOKEN": "t"}
    assert client.get("/automate/metrics", HTTP_AUTHORIZATION="Bearer t").status_code == 404


@pytest.mark.urls("tests.observability.urls")
def test_the_view_needs_staff_or_the_token(client, observed):
    anonymous = client.get("/automate/metrics")
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/automate/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/automate/metrics", HTTP_AUTHORIZATION="Basic bWV0cmljcy10ZXN0LXRva2Vu").status_code == 403
    assert client.get("/automate/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403
    ok = client.get("/automate/metrics", HTTP_AUTHORIZATION="Bearer metrics-test-token")
    assert ok.status_code == 200 and ok["Content-Type"].startswith("text/plain")
    assert client.post("/automate/metrics", HTTP_AUTHORIZATION="Bearer metrics-test-token").status_code == 405

    User.objects.create_user("op", password="pw", is_staff=False)
    client.login(username="op", password="pw")
    assert client.get("/automate/metrics").status_code == 403
    User.objects.filter(username="op").update(is_staff=True)
    assert client.get("/automate/metrics").status_code == 200


@pytest.mark.urls("tests.observability.urls")
def test_the_token_may_be_a_secret_reference(client, settings, monkeypatch):
    monkeypatch.setenv("AUTOMATE_OBS_METRICS_TOKEN", "from-the-secret-store")
    settings.DJANGO_AUTOMATE = {"METRICS_EXPORT": True, "METRICS_TOKEN": "$secret:OBS_METRICS_TOKEN"}
    assert client.get("/automate/metrics", HTTP_AUTHORIZATION="Bearer from-the-secret-store").status_code == 200
    assert client.get("/automate/metrics", HTTP_AUTHORIZATION="Bearer $secret:OBS_METRICS_TOKEN").status_code == 403


@pytest.mark.urls("tests.observability.urls")
def test_the_view_has_no_token_access_when_no_token_is_set(client, settings):
    settings.DJANGO_AUTOMATE = {"METRICS_EXPORT": True}
    assert client.get("/automate/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403
    assert client.get("/automate/metrics", HTTP_AUTHORIZATION="Bearer x").status_code == 403


@pytest.mark.urls("tests.observability.urls")
def test_emitted_events_and_the_outbox_in_the_web_process(client, observed, monkeypatch):
    monkeypatch.setattr(web_metrics, "_django_outbox", None)  # no figures cached by an earlier test

    def scrape() -> dict:
        response = client.get("/automate/metrics", HTTP_AUTHORIZATION="Bearer metrics-test-token")
        assert response.status_code == 200
        return samples(response.content.decode())

    before = value(scrape(), "automate_events_emitted_total", type="invoice.*")
    first = emit_event("invoice.paid", {}, dedupe_key="inv-1")
    emit_event("invoice.sent", {})
    assert emit_event("invoice.paid", {}, dedupe_key="inv-1") == first  # stored once: counted once
    monkeypatch.setattr(web_metrics, "_django_outbox", None)
    after = scrape()
    assert value(after, "automate_events_emitted_total", type="invoice.*") - before == 2
    assert value(after, "automate_outbox_depth", state="due") == 2  # no worker runs here
    assert value(after, "automate_outbox_oldest_due_age_seconds") > 0


@pytest.mark.urls("tests.observability.urls")
def test_llm_spend_today_is_read_from_the_database(client, observed):
    from decimal import Decimal

    from automate.connectors.llm import budget

    def scrape() -> dict:
        response = client.get("/automate/metrics", HTTP_AUTHORIZATION="Bearer metrics-test-token")
        return samples(response.content.decode())

    assert value(scrape(), "automate_llm_spend_usd_today", state="spent") == 0
    settled = budget.reserve(Decimal("0.25"), cap=Decimal("10"))
    budget.settle(settled, Decimal("0.125"))
    budget.reserve(Decimal("0.5"), cap=Decimal("10"))  # still in flight
    now = scrape()
    assert value(now, "automate_llm_spend_usd_today", state="spent") == 0.125
    assert value(now, "automate_llm_spend_usd_today", state="reserved") == 0.5


def test_event_type_labels_are_bounded(observed):
    for i in range(web_metrics.MAX_TYPE_LABELS + 10):
        web_metrics.event_emitted(f"bounded{i}.created")
    labels = {s.labels["type"] for f in web_metrics.EVENTS_EMITTED.collect() for s in f.samples}
    assert len(labels) <= web_metrics.MAX_TYPE_LABELS + 1
    assert "other" in labels
    assert web_metrics.event_type_label("order.created.v2") == "order.*"
    assert web_metrics.event_type_label("sk-live-4f9a1c0e7b2d5a8e3f6c9b0a.created") == "other"  # redacted


def test_the_grafana_dashboard_queries_only_metrics_that_exist():
    import json

    from automate.aio import metrics as worker_metrics  # noqa: F401  (registers the worker's metrics)

    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs, "the dashboard has no queries"
    known: set[str] = set()
    registry = web_metrics.registry_for_scrape(
        web_metrics.OutboxCollector(lambda: (0, 0, 0, 0.0)), web_metrics.LlmSpendCollector(lambda: 0.0)
    )
    for family in registry.collect():  # what a scrape can hold, observed or not yet
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(family.type, ("",))
        known.update(family.name + suffix for suffix in suffixes)
    used = {name for expr in exprs for name in re.findall(r"\b(automate_[a-z_]+)", expr)}
    assert used, exprs
    assert used <= known, sorted(used - known)
    for name in ("automate_jobs_claimed_total", "automate_runs_total", "automate_step_attempts_total",
                 "automate_step_duration_seconds_bucket", "automate_outbox_depth", "automate_events_emitted_total"):
        assert name in used, f"the dashboard does not graph {name}"


def test_workers_sharing_a_multiprocess_directory_report_their_sum(pg_conninfo, observed, tmp_path, monkeypatch):
    """PROMETHEUS_MULTIPROC_DIR: two workers on one host, each on its own port, each scrape the sum."""
    publish("metered", trigger_spec={"event": "order.placed"},
            steps=[{"id": "t", "type": "transform", "config": {"output": 1}}])
    shared = tmp_path / "prom"
    shared.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    ports = [free_port(), free_port()]
    workers = [WorkerProcess(pg_conninfo, "--settings", SETTINGS, "--metrics-port", str(port), "--metrics-addr",
                             "127.0.0.1", "--batch-size", "1", log=tmp_path / f"w{i}.log") for i, port in enumerate(ports)]
    try:
        for w in workers:
            w.wait_for_output("automate.metrics.serving")
        for i in range(20):
            emit_event("order.placed", {"i": i})
        wait_until(lambda: OutboxJob.objects.filter(status="COMPLETED").count() == 20, 60,
                   "\n".join(w.output for w in workers))
        scrapes = [samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text) for port in ports]
    finally:
        for w in workers:
            w.stop()
    claimed_by = [f for f in shared.iterdir() if f.name.startswith("counter_")]
    assert len(claimed_by) == 2, claimed_by  # one file per worker process
    for scrape in scrapes:
        assert value(scrape, "automate_jobs_claimed_total") == 20
        assert value(scrape, "automate_runs_total", workflow="metered", status="SUCCEEDED") == 20
        assert value(scrape, "automate_step_attempts_total", connector="transform", outcome="succeeded") == 20
        assert value(scrape, "automate_outbox_depth", state="due") == 0

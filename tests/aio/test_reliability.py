"""Crashes, lost connections and a database restart, with real worker processes."""

from __future__ import annotations

import collections
import contextlib
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import close_old_connections
from psycopg.conninfo import conninfo_to_dict

from automate import queries
from automate.embedded import embedded_url
from automate.models import ExecutionRun, OutboxJob, StepRun
from automate.runtime import emit_event
from automate.workflows import publish
from tests.aio.procs import ROOT, WorkerProcess, wait_until
from tests.observability.lines import log_messages

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


def publish_stuck_run() -> None:
    """One run whose step sleeps for five minutes: in flight for as long as a test needs."""
    publish(
        "stuck",
        trigger_spec={"event": "stuck"},
        steps=[{"id": "s", "type": "python", "timeout_seconds": 600,
                "config": {"callable": "tests.steps.asleep", "kwargs": {"seconds": 300}}}],
    )
    emit_event("stuck", {})


def marks(path) -> collections.Counter[str]:
    return collections.Counter(path.read_text().split()) if path.exists() else collections.Counter()


def test_sigkill_mid_run_second_worker_completes_without_rerunning_completed_steps(pg_conninfo, tmp_path):
    log = tmp_path / "marks"
    mark = {"callable": "tests.steps.mark", "kwargs": {"path": str(log)}}
    publish(
        "three-steps",
        trigger_spec={"event": "job.*"},
        steps=[
            {"id": "a", "type": "python", "config": mark},
            {"id": "b", "type": "python", "depends_on": ["a"],
             "config": {"callable": "tests.steps.mark", "kwargs": {"path": str(log), "sleep": 3}}},
            {"id": "c", "type": "python", "depends_on": ["b"], "config": mark},
        ],
    )
    events = [emit_event("job.start", {"i": i}) for i in range(5)]
    first = WorkerProcess(pg_conninfo, "--lease-seconds", "2", "--poll-interval", "0.5", log=tmp_path / "w1.log")
    try:
        # Kill it while every run is inside step b (sleeping 3 s) and a is done and recorded.
        wait_until(lambda: sum(1 for k in marks(log) if k.endswith(":b")) == 5, 30, "step b never started")
        wait_until(lambda: StepRun.objects.filter(step_id="a", status="SUCCEEDED").count() == 5, 30,
                   "step a was never recorded")
        assert not StepRun.objects.filter(step_id="b", status="SUCCEEDED").exists(), "b ended before the kill"
        first.kill()
    finally:
        first.stop()
    assert ExecutionRun.objects.filter(status="SUCCEEDED").count() == 0
    assert StepRun.objects.filter(step_id="a", status="SUCCEEDED").count() == 5

    second = WorkerProcess(pg_conninfo, "--drain", "--lease-seconds", "2", "--poll-interval", "0.2", log=tmp_path / "w2.log")
    try:
        assert second.wait(60) == 0, second.output
    finally:
        second.stop()
    runs = ExecutionRun.objects.all()
    assert sorted(str(r.event_id) for r in runs) == sorted(events)  # no event lost
    assert {r.status for r in runs} == {"SUCCEEDED"}
    counts = marks(log)
    for run in runs:
        assert counts[f"{run.id}:a"] == 1  # completed before the crash: never run again
        assert counts[f"{run.id}:b"] == 2  # in flight at the crash: run again (at least once)
        assert counts[f"{run.id}:c"] == 1
    jobs = OutboxJob.objects.all()
    assert {j.status for j in jobs} == {"COMPLETED"}
    assert {j.attempts for j in jobs} == {2}


def _listener_pids(conninfo: str) -> list[int]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'automate-listener'"
        ).fetchall()
    return [r[0] for r in rows]


def _terminate(conninfo: str, pids: list[int]) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_listener_connection_killed_while_events_arrive(pg_conninfo, tmp_path):
    """The fallback poll is an hour, longer than the test may wait: every event is processed only if the
    LISTEN connection comes back (and the worker claims on reconnect what was notified while it was away)."""
    publish("fast", trigger_spec={"event": "tick"}, steps=[{"id": "t", "type": "transform", "config": {"output": 1}}])
    worker = WorkerProcess(pg_conninfo, "--poll-interval", "3600", log=tmp_path / "w.log")
    try:
        wait_until(lambda: _listener_pids(pg_conninfo), 30, "listener never connected")
        emitted = 0
        for round_ in range(3):
            for _ in range(40):
                emit_event("tick", {"round": round_})
                emitted += 1
                time.sleep(0.01)
            old = _listener_pids(pg_conninfo)
            _terminate(pg_conninfo, old)
            wait_until(lambda old=old: (p := _listener_pids(pg_conninfo)) and p != old, 20, "listener never came back")
        for _ in range(20):
            emit_event("tick", {"round": "last"})
            emitted += 1
        wait_until(lambda: ExecutionRun.objects.filter(status="SUCCEEDED").count() == emitted, 120,
                   "not every event was processed (the poll is an hour: LISTEN did not come back)")
    finally:
        stop_worker(worker)
    assert ExecutionRun.objects.count() == emitted
    assert OutboxJob.objects.exclude(status="COMPLETED").count() == 0


def stop_worker(worker: WorkerProcess, grace: float = 30) -> None:
    """SIGTERM, wait for a clean exit; whatever happens, the process is killed and its log closed."""
    try:
        worker.terminate()
        worker.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    finally:
        worker.stop()


def test_worker_cli_banner_and_drain(pg_conninfo, tmp_path):
    emit_event("nobody.listens", {})
    worker = WorkerProcess(
        pg_conninfo, "--drain", "--concurrency", "7", "--batch-size", "3", "--lease-seconds", "12",
        log=tmp_path / "w.log",
    )
    try:
        assert worker.wait(60) == 0, worker.output
    finally:
        worker.stop()
    out = log_messages(worker.output)  # the banner and the final line are log records (ECS lines here)
    banner = re.search(
        r"^automate-aio-worker (?P<id>\S+) db=(?P<db>\S+) concurrency=7 batch=3 prefetch=3 lease=12s mode=thread "
        r"enabled=True drain=True loop=asyncio$",
        out,
        re.MULTILINE,
    )
    assert banner, out
    assert re.fullmatch(rf".+-{worker.proc.pid}-[0-9a-f]{{6}}", banner["id"])  # host-pid-random
    assert banner["db"] == conninfo_to_dict(pg_conninfo).get("host", "local")
    assert f"automate-aio-worker {banner['id']} stopped: claimed=1 lost=0" in out
    assert OutboxJob.objects.get().status == "COMPLETED"


def test_sigterm_lets_in_flight_steps_finish(pg_conninfo, tmp_path):
    log = tmp_path / "marks"
    publish(
        "slow",
        trigger_spec={"event": "slow"},
        steps=[{"id": "s", "type": "python", "config": {"callable": "tests.steps.mark", "kwargs": {"path": str(log), "sleep": 1.5}}}],
    )
    emit_event("slow", {})
    worker = WorkerProcess(pg_conninfo, "--grace", "20", log=tmp_path / "w.log")
    try:
        wait_until(lambda: marks(log), 30, "step never started")
        worker.terminate()
        assert worker.wait(30) == 0, worker.output
    finally:
        worker.stop()
    assert ExecutionRun.objects.get().status == "SUCCEEDED"
    assert OutboxJob.objects.get().status == "COMPLETED"


def test_sigterm_after_grace_cancels_and_releases_for_immediate_reclaim(pg_conninfo, tmp_path):
    publish_stuck_run()
    worker = WorkerProcess(pg_conninfo, "--grace", "0.5", "--lease-seconds", "300", log=tmp_path / "w.log")
    try:
        wait_until(lambda: StepRun.objects.filter(status="RUNNING").exists(), 30, "step never started")
        worker.terminate()
        assert worker.wait(30) == 0, worker.output
    finally:
        worker.stop()
    job = OutboxJob.objects.get()
    # Released, not left to its 300 s lease: claimable at once, and the claim was not counted.
    assert (job.status, job.worker_id, job.lease_expires_at, job.attempts) == ("PENDING", None, None, 0)


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[tuple[str, Path, object]]:
    """A private embedded server for a test that restarts it: stopped at the end whatever happens (pgserver's
    own cleanup would not stop it, it only knows the postmaster it started, not a restarted one)."""
    import pgserver
    from pgserver._commands import pg_ctl

    data = tmp_path / "pg"
    url = embedded_url(data, quiet=True)
    server = pgserver.get_server(data, cleanup_mode="stop")
    try:
        yield url, data, server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running (a failed restart)
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data, user=server.system_user, timeout=60)
        import psutil  # pgserver's own dependency

        with contextlib.suppress(psutil.NoSuchProcess):  # stopped above: pgserver finds nothing left to kill
            server.cleanup()
        assert not (data / "postmaster.pid").exists(), "the private server is still running"


def test_database_restart_under_load(private_server, tmp_path):
    """A private server, restarted while events are being emitted: the worker reconnects, nothing is lost."""
    from pgserver._commands import pg_ctl

    url, data, server = private_server
    env = {"AUTOMATE_TEST_WORKER_DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "django", "migrate", "-v0"], cwd=ROOT, env={**os.environ, **env}, check=True, timeout=120)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO automate_workflow (slug, name, enabled, created_at, updated_at) VALUES ('r', 'r', true, now(), now())"
        )
        conn.execute(
            "INSERT INTO automate_workflow_version (workflow_id, version_num, trigger_spec, steps, created_at, created_by) "
            "SELECT id, 1, '{\"event\": \"load\"}', '[{\"id\": \"t\", \"type\": \"transform\", \"config\": {\"output\": 1}}]', now(), '' "
            "FROM automate_workflow"
        )
    committed = 0
    stop = threading.Event()

    def emitter() -> None:
        nonlocal committed
        while not stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
                    while not stop.is_set():
                        conn.execute(queries.EMIT_EVENT, {
                            "id": uuid.uuid4(), "type": "load", "payload": "{}", "source": "", "dedupe_key": None,
                            "traceparent": "", "tracestate": "", "max_attempts": 4,
                        })
                        committed += 1
                        conn.execute(queries.NOTIFY_OUTBOX)
                        time.sleep(0.005)  # the load's pace
            except psycopg.OperationalError:
                time.sleep(0.1)  # the server is down: try again

    worker = WorkerProcess(url, "--poll-interval", "0.5", "--lease-seconds", "3", log=tmp_path / "w.log")
    thread = threading.Thread(target=emitter)
    try:
        worker.wait_for_output("automate-aio-worker")
        thread.start()
        wait_until(lambda: committed >= 100, 60, "the emitter never got going")
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=data, user=server.system_user, timeout=60)
        after_restart = committed
        wait_until(lambda: committed >= after_restart + 100, 60, "the emitter never reconnected")
        stop.set()
        thread.join(30)
        assert not thread.is_alive()

        def done() -> bool:
            with psycopg.connect(url, autocommit=True) as conn:
                left = conn.execute("SELECT count(*) FROM automate_outbox_job WHERE status <> 'COMPLETED'").fetchone()[0]
                runs = conn.execute("SELECT count(*) FROM automate_execution_run WHERE status = 'SUCCEEDED'").fetchone()[0]
                events = conn.execute("SELECT count(*) FROM automate_event").fetchone()[0]
            return left == 0 and runs == events

        wait_until(done, 60, "the worker did not catch up after the restart")
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(30)
        stop_worker(worker)
        close_old_connections()
    with psycopg.connect(url, autocommit=True) as conn:
        events = conn.execute("SELECT count(*) FROM automate_event").fetchone()[0]
        dupes = conn.execute(
            "SELECT count(*) FROM (SELECT event_id FROM automate_execution_run GROUP BY event_id HAVING count(*) > 1) d"
        ).fetchone()[0]
    # A commit whose reply was lost in the restart is stored but not counted by the emitter.
    assert events >= committed and dupes == 0
    assert "reconnecting" in worker.output or "claim.failed" in worker.output or "flush_failed" in worker.output


def test_second_signal_exits_at_once(pg_conninfo, tmp_path):
    publish_stuck_run()
    worker = WorkerProcess(pg_conninfo, "--grace", "120", log=tmp_path / "w.log")
    try:
        wait_until(lambda: StepRun.objects.filter(status="RUNNING").exists(), 30, "step never started")
        worker.terminate()
        worker.wait_for_output("automate.worker.stopping")  # the first signal was handled...
        assert worker.proc.poll() is None  # ...and it is still draining: the grace period is 120 s
        worker.terminate()
        assert worker.wait(10) == 1
    finally:
        worker.stop()
    # Left claimed: its lease brings it back to another worker.
    assert OutboxJob.objects.get().status == "CLAIMED"


def test_new_version_is_picked_up_by_a_running_worker(pg_conninfo, tmp_path):
    """The fallback poll is 60 s: the cache must be refreshed by the NOTIFY sent when a version is saved."""
    publish("evolving", trigger_spec={"event": "e"}, steps=[{"id": "t", "type": "transform", "config": {"output": "v1"}}])
    worker = WorkerProcess(pg_conninfo, "--poll-interval", "60", log=tmp_path / "w.log")
    try:
        wait_until(lambda: _listener_pids(pg_conninfo), 30, "listener never connected")
        emit_event("e", {})
        wait_until(lambda: ExecutionRun.objects.filter(status="SUCCEEDED").count() == 1, 30, "first run missing")
        publish("evolving", trigger_spec={"event": "e"}, steps=[{"id": "t", "type": "transform", "config": {"output": "v2"}}])
        # No wait needed: publish() sent NOTIFY automate_workflows when it committed, before emit_event's
        # NOTIFY automate_outbox; PostgreSQL delivers them in commit order on the one LISTEN connection, and
        # the worker drops its cache on the first before the second wakes its claimer.
        emit_event("e", {})
        wait_until(lambda: ExecutionRun.objects.filter(status="SUCCEEDED").count() == 2, 30, "second run missing")
    finally:
        stop_worker(worker)
    outputs = [r.outputs["t"] for r in ExecutionRun.objects.order_by("created_at")]
    assert outputs == ["v1", "v2"]

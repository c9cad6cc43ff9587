"""A process that emits and exits at once (a management command, a cron script, ``manage.py shell``)
still wakes an idle worker: the notifier flushes its pending NOTIFY at interpreter exit, and an exit
never hangs when the database cannot be reached.

Reproduced before the fix: with ``--poll-interval 60`` the event waited the whole minute, because the
NOTIFY was to be sent by a daemon thread that died with the emitting process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from automate.models import OutboxJob
from automate.runtime import emit_event
from automate.workflows import publish
from tests.aio.procs import ROOT, WorkerProcess, wait_until
from tests.conftest import drain_notifies

pytestmark = pytest.mark.django_db(transaction=True)

STEPS = [{"id": "t", "type": "transform", "config": {"output": "done"}}]


def _run_script(conninfo: str, code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AUTOMATE_TEST_WORKER_DATABASE_URL": conninfo,  # tests.settings: the test database itself
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


EMIT_AND_EXIT = """
import django
django.setup()
from automate.runtime import emit_event
print(emit_event("exit.wake", {"from": "script"}))
"""


def _status(event_id: str) -> str:
    return OutboxJob.objects.get(event_id=event_id).status


def test_an_event_emitted_by_an_exiting_process_wakes_an_idle_worker(pg_conninfo, tmp_path):
    publish("exit-wake", trigger_spec={"event": "exit.wake"}, steps=STEPS)
    worker = WorkerProcess(pg_conninfo, "--poll-interval", "60", log=tmp_path / "w.log")
    try:
        # A first event, woken from here, proves the worker is up, listening and then idle: its next
        # fallback poll is a minute away.
        first = emit_event("exit.wake", {"from": "test"})
        wait_until(lambda: _status(first) == "COMPLETED", 30, f"the worker never ran the first event:\n{worker.output}")
        done = _run_script(pg_conninfo, EMIT_AND_EXIT)
        assert done.returncode == 0, done.stderr
        event_id = done.stdout.strip().splitlines()[-1]
        # Far less than the 60 s poll: only the NOTIFY sent at the script's exit can have woken it.
        wait_until(
            lambda: _status(event_id) == "COMPLETED",
            10,
            f"the exiting script's wake-up was lost:\n{worker.output}",
        )
    finally:
        worker.stop()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers: a connect hangs until its timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        server.close()


NOTIFY_UNREACHABLE_AND_EXIT = """
import time
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=[], USE_TZ=True,
    DATABASES={{"default": {{"ENGINE": "django.db.backends.postgresql", "NAME": "x", "USER": "x",
                           "HOST": "127.0.0.1", "PORT": "{port}"}}}},
)
django.setup()
from automate import notify
notify.notify_on_commit()  # autocommit: a wake-up is requested at once, and its connect hangs
time.sleep(0.2)
print(time.monotonic(), flush=True)
"""


def test_the_exit_does_not_hang_when_the_database_cannot_be_reached(pg_conninfo, silent_server):
    done = _run_script(pg_conninfo, NOTIFY_UNREACHABLE_AND_EXIT.format(port=silent_server), timeout=30)
    exited = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process on the machine
    assert done.returncode == 0, done.stderr
    exit_seconds = exited - float(done.stdout.strip().splitlines()[-1])
    # The flush gives up after EXIT_FLUSH_SECONDS (1 s); the hanging connect alone would take its 5 s
    # connect_timeout, and an unbounded flush longer still.
    assert exit_seconds < 4, f"the exit took {exit_seconds:.1f}s"


def test_the_exit_does_not_hang_when_the_port_is_closed(pg_conninfo):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: connects are refused
    done = _run_script(pg_conninfo, NOTIFY_UNREACHABLE_AND_EXIT.format(port=port), timeout=30)
    exited = time.monotonic()
    assert done.returncode == 0, done.stderr
    assert exited - float(done.stdout.strip().splitlines()[-1]) < 4


PUBLISH_AND_EXIT = """
import django
django.setup()
from automate.workflows import publish
publish("from-a-script", trigger_spec={"event": "script.event"}, steps=[
    {"id": "t", "type": "transform", "config": {"output": 1}},
])
"""


def test_a_workflow_published_by_an_exiting_process_notifies_the_workers(pg_conninfo):
    """The other after-commit path: NOTIFY automate_workflows after a version is saved."""
    with psycopg.connect(pg_conninfo, autocommit=True) as conn:
        conn.execute("LISTEN automate_workflows")
        done = _run_script(pg_conninfo, PUBLISH_AND_EXIT)
        assert done.returncode == 0, done.stderr
        notes = drain_notifies(conn, timeout=2)
    assert "automate_workflows" in {n.channel for n in notes}

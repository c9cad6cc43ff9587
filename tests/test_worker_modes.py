"""WORKER_MODE: one end-to-end scenario in each mode, on the real database.

* ``synchronous``: ``emit_event`` and ``Task.enqueue`` run their work before they return, in this process.
* ``thread`` and ``process``: ``manage.py automate_worker --drain`` (a real subprocess) runs it; sync code
  runs in the worker's threads, or in its pool's processes (another pid, audit entries carried back).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

from automate.models import AuditLogEntry, ExecutionRun, OutboxJob, StepRun
from automate.runtime import emit_event
from automate.tasks import compat
from automate.workflows import publish
from tests import automate_tasks as tasks

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[1]
POLICY = {"python_allowlist": ["tests.steps.*", "tests.mode_steps.*"]}
TASKS = {"default": {"BACKEND": "automate.tasks.AutomateTaskBackend"}}
STEPS = [
    {"id": "where", "type": "python", "config": {"callable": "tests.mode_steps.where", "kwargs": {"n": "{{ event.payload.n }}"}}},
    {"id": "after", "type": "transform", "depends_on": ["where"], "config": {"output": "{{ steps.where.output.n }}"}},
]
NAP = [{"id": "nap", "type": "python", "timeout_seconds": 1, "max_retries": 0,
        "config": {"callable": "tests.mode_steps.nap", "kwargs": {"seconds": 60}}}]


def run_worker(mode: str, conninfo: str, log: Path) -> int:
    """``python -m django automate_worker --drain`` with WORKER_MODE ``mode``; its pid."""
    env = {**os.environ, "AUTOMATE_TEST_WORKER_DATABASE_URL": conninfo, "AUTOMATE_TEST_WORKER_MODE": mode,
           "DJANGO_SETTINGS_MODULE": "tests.modes_settings", "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "django", "automate_worker", "--settings", "tests.modes_settings", "--drain",
             "--concurrency", "4", "--poll-interval", "0.2"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
        try:
            code = proc.wait(90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    text = log.read_text(errors="replace")
    assert code == 0, text
    assert f"mode={mode}" in text, text
    return proc.pid


@pytest.mark.parametrize("mode", ["synchronous", "thread", "process"])
def test_the_same_scenario_in_each_worker_mode(mode, pg_conninfo, tmp_path):
    conf = {"POLICY": POLICY, "WORKER_MODE": "synchronous" if mode == "synchronous" else "thread"}
    with override_settings(DJANGO_AUTOMATE=conf, TASKS=TASKS):
        publish("modes", trigger_spec={"event": "mode.test"}, steps=STEPS)
        publish("naps", trigger_spec={"event": "mode.nap"}, steps=NAP)
        event_id = emit_event("mode.test", {"n": 7})
        result = tasks.where.enqueue()
        if mode == "synchronous":  # done before emit_event/enqueue returned
            worker_pid = os.getpid()
        else:
            assert ExecutionRun.objects.count() == 0  # nothing ran yet: a worker runs it
            worker_pid = run_worker(mode, pg_conninfo, tmp_path / "worker.log")
        run = ExecutionRun.objects.get(event_id=event_id)
        assert run.status == "SUCCEEDED", run.error
        output = run.outputs["where"]
        assert output["n"] == 7 and run.outputs["after"] == 7
        assert output["key"] == f"{run.pk}:where"
        task_result = tasks.where.get_result(result.id)
        assert task_result.status == compat.TaskResultStatus.SUCCESSFUL
        if mode == "process":  # in a pool process: another pid, no worker thread
            assert output["pid"] != worker_pid and task_result.return_value["pid"] != worker_pid
        else:
            assert output["pid"] == worker_pid and task_result.return_value["pid"] == worker_pid
            assert output["thread"].startswith("automate-sync")
        entry = AuditLogEntry.objects.get(action="test.worker_mode")
        assert entry.resource == f"run:{run.pk}" and entry.details["n"] == 7
        assert list(StepRun.objects.filter(run=run).values_list("step_id", "status").order_by("step_id")) == [
            ("after", "SUCCEEDED"), ("where", "SUCCEEDED")]
        assert set(OutboxJob.objects.values_list("status", flat=True)) == {"COMPLETED"}

        if mode == "synchronous":
            return
        # A sync step over its deadline fails its run; a process pool cannot stop the call, but the
        # worker still exits at once (its pool's processes are terminated), never after the call's 60 s.
        nap_event = emit_event("mode.nap", {})
        run_worker(mode, pg_conninfo, tmp_path / "nap.log")
        nap = ExecutionRun.objects.get(event_id=nap_event)
        assert nap.status == "FAILED" and "TimeoutError" in nap.error, nap.error


def test_automate_worker_has_the_options_of_automate_aio_worker():
    from automate.aio.cli import _parser
    from automate.management.commands.automate_worker import Command

    parser = argparse.ArgumentParser()
    Command().add_arguments(parser)
    ours = {s for a in parser._actions for s in a.option_strings} - {"-h", "--help"}
    cli = {s for a in _parser()._actions for s in a.option_strings} - {"-h", "--help", "--settings"}
    assert ours == cli and "--drain" in ours and "--concurrency" in ours

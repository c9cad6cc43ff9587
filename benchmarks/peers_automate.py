"""bench_peers.py's automate systems: ``automate-aio-worker`` on workflow runs and on bare Django tasks.

* ``automate``: each job is an event matched by one workflow of one ``python`` step
  (``peers_automate.automate_job``), so each job is a whole workflow run: the event's outbox job claimed,
  the ExecutionRun and StepRun rows written in their final state, the job COMPLETED (the drain checks
  every row afterwards).
* ``automate-uvloop``: the same worker and workflow with ``--loop uvloop`` (drain only), next to
  ``automate``'s default ``--loop asyncio``.
* ``automate-tasks`` / ``automate-atasks``: N no-op Django tasks (``peers_tasks.noop``, a sync ``@task``
  run in the worker's thread pool; ``peers_tasks.anoop``, an async one on its loop), enqueued as the
  ``AutomateTaskBackend`` writes them (one ``kind='task'`` outbox row each, its payload as the backend
  builds it), drained by the same worker (drain only); every job must end COMPLETED with a SUCCESSFUL
  result.

The steps and tasks write their start times to ``$BENCH_PROBE_FILE`` (buffered, or line by line when
``$BENCH_PROBE_FLUSH`` is set: the latency test watches the file); the drain window is the first start
to the worker process's exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import importlib.util
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import _common as common
import psycopg
from peers_base import DrainOutcome, Enqueue, Params, System, paced_enqueues, run_process, stop_process

AUTOMATE_SETTINGS = {"POLICY": {"python_allowlist": ["peers_automate.automate_*"]}}
AUTOMATE_EVENT = {"noop": "bench.noop", "sleep": "bench.sleep", "probe": "bench.probe"}
AUTOMATE_PUBLISH = """
import json, sys
import django
django.setup()
from automate.workflows import publish
for slug, event, kwargs in json.loads(sys.argv[1]):
    publish(slug, trigger_spec={"event": event},
            steps=[{"id": "job", "type": "python",
                    "config": {"callable": "peers_automate.automate_job", "kwargs": kwargs}}])
"""
AUTOMATE_ENQUEUE_MANY = """
WITH ev AS (
    INSERT INTO automate_event (id, type, payload, source, traceparent, tracestate, created_at)
    SELECT gen_random_uuid(), %(type)s, jsonb_build_object('i', g), '', '', '', now()
    FROM generate_series(1, %(n)s::int) AS g
    RETURNING id
)
INSERT INTO automate_outbox_job (kind, status, priority, event_id, available_at, attempts, max_attempts)
SELECT 'event', 'PENDING', 0, ev.id, now(), 0, 4 FROM ev
"""
# Jobs not done, plus events without a SUCCEEDED run whose step SUCCEEDED: 0 after a full-record drain.
AUTOMATE_NOT_RECORDED = """
SELECT (SELECT count(*) FROM automate_outbox_job WHERE status <> 'COMPLETED')
     + (SELECT count(*) FROM automate_event e WHERE NOT EXISTS (
            SELECT 1 FROM automate_execution_run r JOIN automate_step_run s ON s.run_id = r.id
            WHERE r.event_id = e.id AND r.status = 'SUCCEEDED' AND s.status = 'SUCCEEDED'))
"""
# What AutomateTaskBackend.enqueue writes (automate.queries.ENQUEUE_TASK), for n tasks in one statement.
TASKS_ENQUEUE_MANY = """
INSERT INTO automate_outbox_job (kind, status, priority, payload, available_at, attempts, max_attempts)
SELECT 'task', 'PENDING', 0,
       jsonb_build_object('func', %(func)s::text, 'args', jsonb_build_array(g), 'kwargs', '{}'::jsonb,
                          'queue', 'default', 'backend', 'default', 'takes_context', false),
       now(), 0, 4
FROM generate_series(1, %(n)s::int) AS g
"""
TASKS_NOT_DONE = """
SELECT count(*) FROM automate_outbox_job
WHERE kind <> 'task' OR status <> 'COMPLETED' OR payload->'result'->>'status' IS DISTINCT FROM 'SUCCESSFUL'
"""

_probe_out: Any = None


def record_start(i: int) -> None:
    """Write job i's start time to ``$BENCH_PROBE_FILE`` (the step's and the tasks' only work)."""
    now = time.time()
    out = _probe_out or _open_probe_file()
    if out is not None:
        out.write(f"{i} {now}\n")


async def automate_job(i: int, sleep: float = 0.0) -> None:
    """The workflows' one python step: record its start, maybe sleep (runs in the automate worker)."""
    record_start(i)
    if sleep:
        await asyncio.sleep(sleep)


def _open_probe_file() -> Any:
    global _probe_out
    if os.environ.get("BENCH_PROBE_FILE"):
        buffering = 1 if os.environ.get("BENCH_PROBE_FLUSH") else 1 << 20
        _probe_out = open(os.environ["BENCH_PROBE_FILE"], "a", buffering=buffering)  # noqa: SIM115
        atexit.register(_probe_out.close)
    return _probe_out


def read_probe_file(path: Path) -> dict[int, float]:
    starts: dict[int, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                starts[int(parts[0])] = float(parts[1])
    return starts


async def _count(db: str, query: str) -> int:
    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
        row = await (await conn.execute(query)).fetchone()
    return int(row[0]) if row else -1


class AutomateSystem(System):
    """The project's own worker on workflow runs (see the module docstring). Drain and io are timed from
    the first step start to the worker's exit (``--drain``); latency from the enqueue commit to the step
    start, the enqueuer doing what ``emit_event`` does on the wire (the INSERT's commit, then NOTIFY)."""

    name = "automate"
    label = "automate-aio-worker"
    loop: ClassVar[str] = "asyncio"

    def __init__(self, io_sleep: float) -> None:
        self.io_sleep = io_sleep

    def settings(self, p: Params) -> str:
        return (f"automate-aio-worker --loop {self._loop(p)} --concurrency N --batch-size {p.batch_size} "
                "(prefetch: one batch); one workflow run of one python step per job, fully recorded")

    def _loop(self, p: Params) -> str:
        return "uvloop" if p.uvloop else self.loop

    def _env(self, db: str, **extra: str) -> dict[str, str]:
        return common.child_env(db, BENCH_AUTOMATE_SETTINGS=json.dumps(AUTOMATE_SETTINGS), **extra)

    async def setup(self, db: str) -> None:
        await asyncio.to_thread(common.migrate_automate, db)
        workflows = [
            ["bench-noop", AUTOMATE_EVENT["noop"], {"i": "{{ event.payload.i }}"}],
            ["bench-sleep", AUTOMATE_EVENT["sleep"], {"i": "{{ event.payload.i }}", "sleep": self.io_sleep}],
            ["bench-probe", AUTOMATE_EVENT["probe"], {"i": "{{ event.payload.i }}"}],
        ]
        await run_process([sys.executable, "-c", AUTOMATE_PUBLISH, json.dumps(workflows)], env=self._env(db),
                          within=120)

    async def enqueue_many(self, db: str, n: int, task: str) -> None:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            await conn.execute(AUTOMATE_ENQUEUE_MANY, {"type": AUTOMATE_EVENT[task], "n": n})

    async def remaining(self, db: str) -> int:
        return await _count(db, AUTOMATE_NOT_RECORDED)

    def _cmd(self, concurrency: int, p: Params, *, drain: bool) -> list[str]:
        exe = shutil.which("automate-aio-worker", path=str(Path(sys.executable).parent))
        run_main = "import sys; from automate.aio.cli import main; sys.exit(main())"
        cmd = [exe] if exe else [sys.executable, "-c", run_main]
        cmd += ["--concurrency", str(concurrency), "--batch-size", str(self.batch_for(p, concurrency)),
                "--loop", self._loop(p), "--log-level", "WARNING"]
        return [*cmd, "--drain"] if drain else cmd

    async def run_until_drained(self, db: str, task: str, concurrency: int, p: Params) -> DrainOutcome:
        probe = p.workdir / f"{self.name}-{task}.starts"
        started = time.perf_counter()
        await run_process(self._cmd(concurrency, p, drain=True), env=self._env(db, BENCH_PROBE_FILE=str(probe)),
                          within=max(300.0, p.jobs / 20))
        end = time.time()
        wall = time.perf_counter() - started
        starts = await asyncio.to_thread(read_probe_file, probe)
        if not starts:
            raise RuntimeError(f"{self.name}: the worker ran no step")
        return DrainOutcome(
            jobs=len(starts),
            seconds=end - min(starts.values()),
            method="first step start -> worker process exit (--drain: outbox empty), this machine's clock",
            detail={"tail_after_last_job_s": round(end - max(starts.values()), 4), "wall_s": round(wall, 3)},
        )

    @contextlib.asynccontextmanager
    async def probe(self, db: str) -> AsyncIterator[Enqueue]:
        from automate import queries

        conn = await psycopg.AsyncConnection.connect(db, autocommit=True)
        try:

            async def enqueue(i: int) -> float:
                await conn.execute(queries.EMIT_EVENT, {
                    "id": uuid.uuid4(), "type": AUTOMATE_EVENT["probe"], "payload": json.dumps({"i": i}),
                    "source": "", "dedupe_key": None, "traceparent": "", "tracestate": "", "max_attempts": 4,
                })
                committed = time.time()
                # emit_event's wake-up, after the commit: its round trip counts in the latency, as it would.
                await conn.execute(queries.NOTIFY_OUTBOX)
                return committed

            yield enqueue
        finally:
            await conn.close()

    async def run_latency(self, db: str, p: Params) -> dict[int, tuple[float, float]]:
        probe_file = p.workdir / f"{self.name}-latency.starts"
        n = p.latency_jobs
        env = self._env(db, BENCH_PROBE_FILE=str(probe_file), BENCH_PROBE_FLUSH="1")
        proc = await asyncio.create_subprocess_exec(*self._cmd(p.latency_concurrency, p, drain=False), env=env)
        commits: dict[int, float] = {}
        try:
            async with self.probe(db) as enqueue:
                await enqueue(0)
                deadline = time.monotonic() + 120
                while 0 not in await asyncio.to_thread(read_probe_file, probe_file):
                    if proc.returncode is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{self.name}: the worker never started the warm-up job")
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.5)
                await paced_enqueues(enqueue, n, p.latency_interval, commits)
            deadline = time.monotonic() + 60
            while len(await asyncio.to_thread(read_probe_file, probe_file)) < n + 1:
                if proc.returncode is not None or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
        finally:
            await stop_process(proc)
        starts = await asyncio.to_thread(read_probe_file, probe_file)
        return {i: (commits[i], starts[i]) for i in commits if i in starts}


class AutomateUvloopSystem(AutomateSystem):
    name = "automate-uvloop"
    label = "automate-aio-worker --loop uvloop"
    loop = "uvloop"
    tests = ("drain",)


class AutomateTasksSystem(AutomateSystem):
    """Bare Django tasks through the same worker: no events, no workflow runs (drain only)."""

    name = "automate-tasks"
    label = "automate Django tasks (sync)"
    func = "peers_tasks.noop"
    where = "sync @task, run in the worker's thread pool"
    tests = ("drain",)

    def settings(self, p: Params) -> str:
        return (f"automate-aio-worker --loop {self._loop(p)} --concurrency N --batch-size {p.batch_size}; "
                f"{self.where}; enqueued as AutomateTaskBackend writes them, result stored in payload.result")

    async def setup(self, db: str) -> None:
        await asyncio.to_thread(common.migrate_automate, db)

    async def enqueue_many(self, db: str, n: int, task: str) -> None:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            await conn.execute(TASKS_ENQUEUE_MANY, {"func": self.func, "n": n})

    async def remaining(self, db: str) -> int:
        return await _count(db, TASKS_NOT_DONE)


class AutomateAsyncTasksSystem(AutomateTasksSystem):
    name = "automate-atasks"
    label = "automate Django tasks (async)"
    func = "peers_tasks.anoop"
    where = "async @task, run on the worker's event loop"


def automate_available() -> tuple[bool, str]:
    try:
        importlib.import_module("automate.aio.cli")
    except ImportError as exc:
        return False, f"not available yet (automate.aio.cli cannot be imported: {exc})"
    return True, ""


def automate_systems(io_sleep: float) -> tuple[list[System], dict[str, str]]:
    """(the automate systems that can run, {name: why not} for those that cannot)."""
    ok, why = automate_available()
    names = ["automate", "automate-uvloop", "automate-tasks", "automate-atasks"]
    if not ok:
        return [], dict.fromkeys(names, why)
    systems: list[System] = [AutomateSystem(io_sleep)]
    unavailable: dict[str, str] = {}
    if importlib.util.find_spec("uvloop") is not None:
        systems.append(AutomateUvloopSystem(io_sleep))
    else:
        unavailable["automate-uvloop"] = "not available (uvloop is not installed)"
    # automate.tasks needs Django's tasks: django.tasks (Django 6) or the django-tasks backport (5.2).
    if importlib.util.find_spec("django.tasks") or importlib.util.find_spec("django_tasks"):
        systems += [AutomateTasksSystem(io_sleep), AutomateAsyncTasksSystem(io_sleep)]
    else:
        why = "not available (neither django.tasks nor the django-tasks backport is installed)"
        unavailable["automate-tasks"] = unavailable["automate-atasks"] = why
    return systems, unavailable

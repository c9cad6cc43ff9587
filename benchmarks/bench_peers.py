"""Worker comparison: procrastinate, pgqueuer and a raw SKIP LOCKED loop, in one run against one server.

    python benchmarks/bench_peers.py [--quick] [--jobs 20000] [--systems raw,procrastinate,pgqueuer]

Every system runs the same three tests, each in its own fresh database on the same PostgreSQL, with its
worker in its own process (this script, re-run with ``--worker``; or a CLI such as
``automate-aio-worker``):

* ``drain``: N no-op jobs are enqueued, then one worker process drains them. jobs/s over the window from
  the first job's start to the worker's exit after the last completion was written.
* ``io``: 5,000 jobs of ``asyncio.sleep(0.05)`` at concurrency 100: runs/s, and % of the ideal
  100 / 0.05 s = 2,000 runs/s (same window).
* ``latency``: an idle worker (listening, as each library does by default), 200 jobs enqueued 20 ms
  apart; latency from the moment the enqueue commit returned to the moment the job function started,
  both read from the same machine clock (p50, p99).

The baseline is ``raw``: a hand-written asyncio + psycopg loop that claims a batch with
``UPDATE ... WHERE id = ANY(ARRAY(SELECT id ... FOR UPDATE SKIP LOCKED LIMIT n)) RETURNING`` and completes
finished jobs in one statement per batch. It does nothing a queue library does besides that (no retries,
no leases, no events, no heartbeats), so it is the ceiling; the others are reported as ratios to it.

A system plugs in by subclassing ``System`` (``setup``, ``enqueue_many``, ``run_until_drained``,
``probe``) and adding itself to ``SYSTEMS``. ``automate`` is registered only when ``automate.aio.cli`` can
be imported; until then it is listed as "not available yet" and has no numbers.

Writes ``benchmarks/results/peers.json`` and the chart ``benchmarks/results/peers.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import functools
import importlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import _common as common
import psycopg

TESTS = ("drain", "io", "latency")
TASK_NAME = "bench_job"
READY_SUFFIX = ".ready"


# =================================================================================================
# Worker side: what runs inside a worker process started with --worker
# =================================================================================================


class Recorder:
    """Timestamps taken inside the job function, written as JSON when the worker returns."""

    def __init__(self, out: Path, expect: int | None) -> None:
        self.out = out
        self.expect = expect
        self.first_start: float | None = None
        self.first_cpu: float | None = None
        self.last_end: float | None = None
        self.tasks = 0
        self.starts: dict[int, float] = {}
        self.enough = asyncio.Event()  # set once `expect` jobs have started (latency mode)
        self.also_set: list[asyncio.Event] = []  # events to set with `enough` (a worker's wake-up)

    def start(self, i: int) -> None:
        now = time.time()
        if self.first_start is None:
            self.first_start = now
            self.first_cpu = time.process_time()
        self.starts[i] = now
        if i == 0:
            Path(str(self.out) + READY_SUFFIX).touch()
        if self.expect is not None and len(self.starts) >= self.expect:
            self.enough.set()
            for event in self.also_set:
                event.set()

    def end(self) -> None:
        self.last_end = time.time()
        self.tasks += 1

    def dump(self, end: float, keep_starts: bool) -> None:
        cpu = time.process_time() - self.first_cpu if self.first_cpu is not None else None
        data = {
            "first_start": self.first_start,
            "last_task_end": self.last_end,
            "end": end,
            "tasks": self.tasks,
            "worker_cpu_s": cpu,
            "starts": {str(k): v for k, v in self.starts.items()} if keep_starts else {},
        }
        self.out.write_text(json.dumps(data))


JobBody = Callable[[int], Awaitable[None]]


def make_body(task: str, rec: Recorder, sleep: float) -> JobBody:
    if task == "sleep":

        async def body(i: int) -> None:
            rec.start(i)
            await asyncio.sleep(sleep)
            rec.end()

    else:  # noop and probe

        async def body(i: int) -> None:
            rec.start(i)
            rec.end()

    return body


@dataclass
class WorkerOptions:
    db: str
    mode: str  # "drain": exit when the queue is empty; "idle": wait for jobs until `expect` have started
    task: str  # noop | sleep | probe
    concurrency: int
    batch_size: int
    sleep: float
    out: Path
    expect: int | None


async def _until(event: asyncio.Event, *tasks: asyncio.Future[Any], within: float | None = None) -> None:
    """Wait until ``event`` is set or one of ``tasks`` is done, at most ``within`` seconds.

    The tasks are only watched, never cancelled here.
    """
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait([waiter, *tasks], timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter


# --- raw SKIP LOCKED loop ---------------------------------------------------------------------------

RAW_SCHEMA = """
CREATE TABLE bench_job (
    id bigserial PRIMARY KEY,
    status text NOT NULL DEFAULT 'todo',
    payload integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    claimed_at timestamptz,
    finished_at timestamptz
);
CREATE INDEX bench_job_todo ON bench_job (id) WHERE status = 'todo';
"""
RAW_CLAIM = """
UPDATE bench_job SET status = 'doing', claimed_at = now()
WHERE id = ANY(ARRAY(
    SELECT id FROM bench_job WHERE status = 'todo' ORDER BY id LIMIT %(n)s FOR UPDATE SKIP LOCKED
))
RETURNING id, payload
"""
RAW_COMPLETE = "UPDATE bench_job SET status = 'done', finished_at = now() WHERE id = ANY(%(ids)s)"
RAW_ENQUEUE_MANY = "INSERT INTO bench_job (payload) SELECT g FROM generate_series(%(first)s::int, %(last)s::int) AS g"
# One simple query, one transaction, one round trip: the NOTIFY is delivered when the INSERT commits.
RAW_ENQUEUE_ONE = "INSERT INTO bench_job (payload) VALUES (%(i)s); NOTIFY bench_job"
RAW_REMAINING = "SELECT count(*) FROM bench_job WHERE status <> 'done'"
RAW_POLL_INTERVAL = 5.0


async def raw_worker(opts: WorkerOptions, rec: Recorder, body: JobBody) -> None:
    """Claim up to min(batch, free slots) jobs at a time; completions are flushed in batches.

    Batching is adaptive: the claim and the completion statements each take a round trip, and whatever
    finished or freed up during it goes into the next one.
    """
    aconnect = psycopg.AsyncConnection.connect
    async with (
        await aconnect(opts.db, autocommit=True) as claim_conn,
        await aconnect(opts.db, autocommit=True) as done_conn,
    ):
        free = opts.concurrency
        slot_freed = asyncio.Event()
        wake = asyncio.Event()
        finished: list[int] = []
        finished_added = asyncio.Event()
        closing = False
        running: set[asyncio.Task[None]] = set()

        async def run_job(job_id: int, i: int) -> None:
            nonlocal free
            try:
                await body(i)
            finally:
                finished.append(job_id)
                finished_added.set()
                free += 1
                slot_freed.set()

        async def completer() -> None:
            while True:
                if not finished:
                    if closing:
                        return
                    finished_added.clear()
                    await finished_added.wait()
                    continue
                ids = finished.copy()
                finished.clear()
                await done_conn.execute(RAW_COMPLETE, {"ids": ids})

        async def listen(conn: psycopg.AsyncConnection[Any]) -> None:
            async for _ in conn.notifies():
                wake.set()

        rec.also_set.append(wake)
        listen_conn = await aconnect(opts.db, autocommit=True) if opts.mode == "idle" else None
        side: list[asyncio.Task[None]] = [asyncio.create_task(completer())]
        try:
            if listen_conn is not None:
                await listen_conn.execute("LISTEN bench_job")
                side.append(asyncio.create_task(listen(listen_conn)))
            while not rec.enough.is_set():
                if free == 0:
                    slot_freed.clear()
                    await slot_freed.wait()
                    continue
                wake.clear()  # before the claim: a NOTIFY arriving during it is not lost
                cur = await claim_conn.execute(RAW_CLAIM, {"n": min(opts.batch_size, free)})
                rows = await cur.fetchall()
                if rows:
                    free -= len(rows)
                    for job_id, i in rows:
                        task = asyncio.create_task(run_job(job_id, i))
                        running.add(task)
                        task.add_done_callback(running.discard)
                    continue
                if opts.mode == "drain":
                    if running:
                        await asyncio.gather(*running)
                        continue
                    break
                await _until(wake, within=RAW_POLL_INTERVAL)
            await asyncio.gather(*running)
            closing = True
            finished_added.set()
            await side[0]
        finally:
            for task in side:
                task.cancel()
            await asyncio.gather(*side, return_exceptions=True)
            if listen_conn is not None:
                await listen_conn.close()


# --- procrastinate --------------------------------------------------------------------------------


def procrastinate_app(db: str, body: JobBody | None = None) -> Any:
    import procrastinate

    # It warns that an App built in __main__ gives its tasks "__main__.x" names; ours are named explicitly.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)

    # Procrastinate's pool default (psycopg_pool's min_size=4) is kept: it is what a user gets.
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=db))
    if body is not None:

        @app.task(name=TASK_NAME)
        async def bench_job(i: int) -> None:
            await body(i)

    return app


async def procrastinate_worker(opts: WorkerOptions, rec: Recorder, body: JobBody) -> None:
    app = procrastinate_app(opts.db, body)
    async with app.open_async():
        kwargs: dict[str, Any] = {"concurrency": opts.concurrency, "install_signal_handlers": False}
        if opts.mode == "drain":
            await app.run_worker_async(wait=False, **kwargs)
            return
        worker = asyncio.create_task(app.run_worker_async(wait=True, **kwargs))
        await _until(rec.enough, worker)
        worker.cancel()  # procrastinate documents cancellation as a graceful stop
        with contextlib.suppress(asyncio.CancelledError):
            await worker


# --- pgqueuer -------------------------------------------------------------------------------------


def asyncpg_connect_kwargs(db: str) -> dict[str, Any]:
    """asyncpg takes no libpq key=value string: the same target as keyword arguments."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(db)
    kwargs: dict[str, Any] = {"database": params.get("dbname"), "user": params.get("user")}
    if params.get("password"):
        kwargs["password"] = params["password"]
    if params.get("host"):
        kwargs["host"] = params["host"]
    if params.get("port"):
        kwargs["port"] = int(str(params["port"]))
    return kwargs


async def pgqueuer_worker(opts: WorkerOptions, rec: Recorder, body: JobBody, *, driver: str) -> None:
    from datetime import timedelta

    from pgqueuer import Job, QueueManager
    from pgqueuer.db import AsyncpgDriver, PsycopgDriver
    from pgqueuer.domain.types import QueueExecutionMode
    from pgqueuer.queries import Queries

    if driver == "asyncpg":
        import asyncpg

        conn: Any = await asyncpg.connect(**asyncpg_connect_kwargs(opts.db))
        pgq_driver: Any = AsyncpgDriver(conn)
    else:
        # pgqueuer's documented psycopg set-up: one autocommit connection for queries and LISTEN.
        conn = await psycopg.AsyncConnection.connect(opts.db, autocommit=True)
        pgq_driver = PsycopgDriver(conn)
    try:
        qm = QueueManager(Queries(pgq_driver))

        @qm.entrypoint(TASK_NAME)
        async def bench_job(job: Job) -> None:
            await body(int(job.payload or b"0"))

        # max_concurrent_tasks must be at least twice the batch size (pgqueuer checks it).
        batch = max(1, min(opts.batch_size, opts.concurrency // 2))
        kwargs: dict[str, Any] = {"batch_size": batch, "max_concurrent_tasks": opts.concurrency}
        if opts.mode == "drain":
            await qm.run(mode=QueueExecutionMode.drain, dequeue_timeout=timedelta(seconds=1), **kwargs)
            return
        run = asyncio.create_task(qm.run(mode=QueueExecutionMode.continuous, **kwargs))
        await _until(rec.enough, run)
        qm.shutdown.set()
        await run
    finally:
        await conn.close()


WORKER_MAINS: dict[str, Callable[[WorkerOptions, Recorder, JobBody], Awaitable[None]]] = {
    "raw": raw_worker,
    "procrastinate": procrastinate_worker,
    "pgqueuer": functools.partial(pgqueuer_worker, driver="asyncpg"),
    "pgqueuer-psycopg": functools.partial(pgqueuer_worker, driver="psycopg"),
}


def worker_entry(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_peers.py --worker")
    parser.add_argument("--worker", required=True, choices=sorted(WORKER_MAINS))
    parser.add_argument("--db", required=True)
    parser.add_argument("--mode", required=True, choices=["drain", "idle"])
    parser.add_argument("--task", required=True, choices=["noop", "sleep", "probe"])
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--sleep", type=float, default=0.05)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--expect", type=int, default=None)
    parser.add_argument("--uvloop", action="store_true")
    a = parser.parse_args(argv)
    opts = WorkerOptions(a.db, a.mode, a.task, a.concurrency, a.batch_size, a.sleep, a.out, a.expect)

    async def main() -> None:
        rec = Recorder(opts.out, opts.expect)
        body = make_body(opts.task, rec, opts.sleep)
        await WORKER_MAINS[a.worker](opts, rec, body)
        rec.dump(time.time(), keep_starts=opts.task == "probe")

    _run(main(), a.uvloop)
    return 0


def _run(coro: Awaitable[Any], use_uvloop: bool) -> Any:
    if use_uvloop:
        import uvloop

        return uvloop.run(coro)  # type: ignore[arg-type]
    return asyncio.run(coro)  # type: ignore[arg-type]


# =================================================================================================
# Harness side: the systems
# =================================================================================================


@dataclass
class Params:
    jobs: int
    io_jobs: int
    io_sleep: float
    io_concurrency: int
    drain_concurrency: int
    batch_size: int
    latency_jobs: int
    latency_interval: float
    uvloop: bool
    workdir: Path


Enqueue = Callable[[int], Awaitable[float | None]]


@dataclass
class DrainOutcome:
    jobs: int
    seconds: float
    method: str
    detail: dict[str, Any] = field(default_factory=dict)


class NotMeasured(Exception):
    """A system cannot run this test yet; the message says why. Reported, never faked."""


class System:
    """One job system under test. Override the async methods; the harness does the rest."""

    name: ClassVar[str]
    label: ClassVar[str]
    notes: ClassVar[str] = ""

    async def setup(self, db: str) -> None:
        """Create the system's schema in the fresh database ``db``, the way its documentation says."""
        raise NotImplementedError

    async def enqueue_many(self, db: str, n: int, task: str) -> None:
        """Enqueue jobs with payloads 1..n; ``task`` is noop or sleep (most systems leave it to the worker)."""
        raise NotImplementedError

    async def remaining(self, db: str) -> int:
        """Jobs not yet completed (checked after a drain: must be 0)."""
        raise NotImplementedError

    async def run_until_drained(self, db: str, task: str, concurrency: int, p: Params) -> DrainOutcome:
        """Start one worker process on the enqueued jobs; return when it has exited with the queue empty."""
        raise NotImplementedError

    def probe(self, db: str) -> contextlib.AbstractAsyncContextManager[Enqueue]:
        """An enqueuer for the latency test: ``await enqueue(i)`` returns once job i is committed.

        It may return the commit time itself (when it does more after the commit); else the moment it
        returned is taken as the commit time.
        """
        raise NotImplementedError

    async def run_latency(self, db: str, p: Params) -> dict[int, tuple[float, float]]:
        """{i: (commit time, start time)} for jobs 1..latency_jobs enqueued to an idle worker."""
        raise NotImplementedError


class ScriptWorkerSystem(System):
    """A system whose worker is this script re-run with ``--worker <name>`` (timestamps from the job)."""

    def _worker_cmd(self, db: str, *, mode: str, task: str, concurrency: int, p: Params, out: Path,
                    expect: int | None = None) -> list[str]:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", self.name, "--db", db,
               "--mode", mode, "--task", task, "--concurrency", str(concurrency),
               "--batch-size", str(p.batch_size), "--sleep", str(p.io_sleep), "--out", str(out)]
        if expect is not None:
            cmd += ["--expect", str(expect)]
        if p.uvloop:
            cmd.append("--uvloop")
        return cmd

    async def run_until_drained(self, db: str, task: str, concurrency: int, p: Params) -> DrainOutcome:
        out = p.workdir / f"{self.name}-{task}.json"
        cmd = self._worker_cmd(db, mode="drain", task=task, concurrency=concurrency, p=p, out=out)
        await run_process(cmd, within=max(300.0, p.jobs / 20))
        data = json.loads(out.read_text())
        if not data["first_start"]:
            raise RuntimeError(f"{self.name}: the worker ran no job")
        seconds = data["end"] - data["first_start"]
        return DrainOutcome(
            jobs=data["tasks"],
            seconds=seconds,
            method="first job start -> worker exit (queue empty, completions written), worker's clock",
            detail={
                "tail_after_last_job_s": round(data["end"] - data["last_task_end"], 4),
                "worker_cpu_s": round(data["worker_cpu_s"], 3) if data["worker_cpu_s"] is not None else None,
            },
        )

    async def run_latency(self, db: str, p: Params) -> dict[int, tuple[float, float]]:
        out = p.workdir / f"{self.name}-latency.json"
        ready = Path(str(out) + READY_SUFFIX)
        n = p.latency_jobs
        cmd = self._worker_cmd(db, mode="idle", task="probe", concurrency=p.io_concurrency, p=p, out=out,
                               expect=n + 1)
        commits: dict[int, float] = {}
        proc = await asyncio.create_subprocess_exec(*cmd)
        try:
            async with self.probe(db) as enqueue:
                await enqueue(0)  # warm-up: once it has started, the worker is up and listening
                deadline = time.monotonic() + 120
                while not await asyncio.to_thread(ready.exists):
                    if proc.returncode is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{self.name}: the worker never started the warm-up job")
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.5)  # idle again
                await _paced_enqueues(enqueue, n, p.latency_interval, commits)
            await asyncio.wait_for(proc.wait(), timeout=60)
        finally:
            await stop_process(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name}: the latency worker exited with {proc.returncode}")
        starts = {int(k): v for k, v in json.loads(out.read_text())["starts"].items()}
        return {i: (commits[i], starts[i]) for i in commits if i in starts}


class RawSystem(ScriptWorkerSystem):
    name = "raw"
    label = "raw SKIP LOCKED loop"
    notes = "asyncio + psycopg; batch claim UPDATE ... ANY(ARRAY(SELECT ... SKIP LOCKED)); batch complete"

    async def setup(self, db: str) -> None:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            await conn.execute(RAW_SCHEMA)

    async def enqueue_many(self, db: str, n: int, task: str) -> None:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            await conn.execute(RAW_ENQUEUE_MANY, {"first": 1, "last": n})

    async def remaining(self, db: str) -> int:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            row = await (await conn.execute(RAW_REMAINING)).fetchone()
        return int(row[0]) if row else -1

    @contextlib.asynccontextmanager
    async def probe(self, db: str) -> AsyncIterator[Enqueue]:
        conn = await psycopg.AsyncConnection.connect(db, autocommit=True, cursor_factory=psycopg.AsyncClientCursor)
        try:

            async def enqueue(i: int) -> None:
                await conn.execute(RAW_ENQUEUE_ONE, {"i": i})

            yield enqueue
        finally:
            await conn.close()


class ProcrastinateSystem(ScriptWorkerSystem):
    name = "procrastinate"
    label = "procrastinate"
    notes = "PsycopgConnector (async), default pool; one job fetched per query; run_worker_async(concurrency=N)"

    async def setup(self, db: str) -> None:
        app = procrastinate_app(db)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    async def enqueue_many(self, db: str, n: int, task: str) -> None:
        app = procrastinate_app(db)
        async with app.open_async():
            deferrer = app.configure_task(TASK_NAME)
            for first in range(1, n + 1, 1000):
                await deferrer.batch_defer_async(*({"i": i} for i in range(first, min(n, first + 999) + 1)))

    async def remaining(self, db: str) -> int:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            cur = await conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')")
            row = await cur.fetchone()
        return int(row[0]) if row else -1

    @contextlib.asynccontextmanager
    async def probe(self, db: str) -> AsyncIterator[Enqueue]:
        app = procrastinate_app(db)
        async with app.open_async():
            deferrer = app.configure_task(TASK_NAME)

            async def enqueue(i: int) -> None:
                await deferrer.defer_async(i=i)

            yield enqueue


class PgqueuerSystem(ScriptWorkerSystem):
    """pgqueuer with asyncpg, its primary driver (the set-up and the enqueuer use psycopg: same SQL)."""

    name = "pgqueuer"
    label = "pgqueuer (asyncpg)"
    notes = "AsyncpgDriver (one connection); batch_size=min(batch, concurrency/2); max_concurrent_tasks=N"

    @contextlib.asynccontextmanager
    async def _queries(self, db: str) -> AsyncIterator[Any]:
        from pgqueuer import Queries

        conn = await psycopg.AsyncConnection.connect(db, autocommit=True)
        try:
            yield Queries.from_psycopg_connection(conn)
        finally:
            await conn.close()

    async def setup(self, db: str) -> None:
        async with self._queries(db) as q:
            await q.install()  # what `pgq install` runs

    async def enqueue_many(self, db: str, n: int, task: str) -> None:
        async with self._queries(db) as q:
            for first in range(1, n + 1, 1000):
                ids = range(first, min(n, first + 999) + 1)
                await q.enqueue([TASK_NAME] * len(ids), [str(i).encode() for i in ids], [0] * len(ids))

    async def remaining(self, db: str) -> int:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            row = await (await conn.execute("SELECT count(*) FROM pgqueuer")).fetchone()
        return int(row[0]) if row else -1

    @contextlib.asynccontextmanager
    async def probe(self, db: str) -> AsyncIterator[Enqueue]:
        async with self._queries(db) as q:

            async def enqueue(i: int) -> None:
                await q.enqueue(TASK_NAME, str(i).encode())

            yield enqueue


class PgqueuerPsycopgSystem(PgqueuerSystem):
    """pgqueuer's documented psycopg set-up: one autocommit AsyncConnection behind PsycopgDriver.

    That driver waits for notifications with ``notifies(timeout=1.0)`` while holding the connection, so
    a query issued meanwhile (a dequeue once a slot frees) can wait up to a second unless a NOTIFY comes.
    """

    name = "pgqueuer-psycopg"
    label = "pgqueuer (psycopg)"
    notes = "PsycopgDriver (one autocommit connection shared by queries and LISTEN)"


AUTOMATE_SETTINGS = {"POLICY": {"python_allowlist": ["bench_peers.automate_*"]}}
AUTOMATE_EVENT = {"noop": "bench.noop", "sleep": "bench.sleep", "probe": "bench.probe"}
AUTOMATE_PUBLISH = """
import json, sys
import django
django.setup()
from automate.workflows import publish
for slug, event, kwargs in json.loads(sys.argv[1]):
    publish(slug, trigger_spec={"event": event},
            steps=[{"id": "job", "type": "python",
                    "config": {"callable": "bench_peers.automate_job", "kwargs": kwargs}}])
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

_probe_out: Any = None


async def automate_job(i: int, sleep: float = 0.0) -> None:
    """The automate workflows' one python step: record its start (like the Recorder), maybe sleep.

    Runs inside ``automate-aio-worker`` (module ``bench_peers``, allowlisted through
    ``BENCH_AUTOMATE_SETTINGS``). Start times go to ``$BENCH_PROBE_FILE``, buffered and written at exit,
    or line by line when ``$BENCH_PROBE_FLUSH`` is set (the latency test watches the file).
    """
    now = time.time()
    out = _probe_out or _open_probe_file()
    if out is not None:
        out.write(f"{i} {now}\n")
    if sleep:
        await asyncio.sleep(sleep)


def _open_probe_file() -> Any:
    global _probe_out
    if os.environ.get("BENCH_PROBE_FILE"):
        buffering = 1 if os.environ.get("BENCH_PROBE_FLUSH") else 1 << 20
        _probe_out = open(os.environ["BENCH_PROBE_FILE"], "a", buffering=buffering)  # noqa: SIM115
        atexit.register(_probe_out.close)
    return _probe_out


def _read_probe_file(path: Path) -> dict[int, float]:
    starts: dict[int, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                starts[int(parts[0])] = float(parts[1])
    return starts


class AutomateSystem(System):
    """The project's own worker, ``automate-aio-worker`` (registered only once automate.aio.cli exists).

    A job is an event matched by one workflow of one ``python`` step (``bench_peers.automate_job``): the
    step is the no-op, the sleep or the probe, so each job is a whole workflow run (ExecutionRun and
    StepRun rows included), the unit of work automate exists for. The schema comes from Django's
    migrate, the workflows from ``automate.workflows.publish``. Drain and io are timed from the first
    step start to the worker's exit (``--drain``); latency from the enqueue commit to the step start, the
    enqueuer doing what ``emit_event`` does on the wire (the INSERT's commit, then NOTIFY automate_outbox).
    """

    name = "automate"
    label = "automate-aio-worker"
    notes = "automate-aio-worker [--drain] --concurrency N --batch-size N; one python step per workflow run"

    def __init__(self, io_sleep: float) -> None:
        self.io_sleep = io_sleep

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
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            cur = await conn.execute("SELECT count(*) FROM automate_outbox_job WHERE status IN ('PENDING', 'CLAIMED')")
            row = await cur.fetchone()
        return int(row[0]) if row else -1

    def _cmd(self, concurrency: int, p: Params, *, drain: bool) -> list[str]:
        exe = shutil.which("automate-aio-worker", path=str(Path(sys.executable).parent))
        run_main = "import sys; from automate.aio.cli import main; sys.exit(main())"
        cmd = [exe] if exe else [sys.executable, "-c", run_main]
        cmd += ["--concurrency", str(concurrency), "--batch-size", str(p.batch_size), "--log-level", "WARNING"]
        return [*cmd, "--drain"] if drain else cmd

    async def run_until_drained(self, db: str, task: str, concurrency: int, p: Params) -> DrainOutcome:
        probe = p.workdir / f"{self.name}-{task}.starts"
        started = time.perf_counter()
        await run_process(self._cmd(concurrency, p, drain=True), env=self._env(db, BENCH_PROBE_FILE=str(probe)),
                          within=max(300.0, p.jobs / 20))
        end = time.time()
        wall = time.perf_counter() - started
        starts = await asyncio.to_thread(_read_probe_file, probe)
        if not starts:
            raise RuntimeError("automate: the worker ran no step")
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
        proc = await asyncio.create_subprocess_exec(*self._cmd(p.io_concurrency, p, drain=False), env=env)
        commits: dict[int, float] = {}
        try:
            async with self.probe(db) as enqueue:
                await enqueue(0)
                deadline = time.monotonic() + 120
                while 0 not in await asyncio.to_thread(_read_probe_file, probe_file):
                    if proc.returncode is not None or time.monotonic() > deadline:
                        raise RuntimeError("automate: the worker never started the warm-up job")
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.5)
                await _paced_enqueues(enqueue, n, p.latency_interval, commits)
            deadline = time.monotonic() + 60
            while len(await asyncio.to_thread(_read_probe_file, probe_file)) < n + 1:
                if proc.returncode is not None or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
        finally:
            await stop_process(proc)
        starts = await asyncio.to_thread(_read_probe_file, probe_file)
        return {i: (commits[i], starts[i]) for i in commits if i in starts}


async def _paced_enqueues(enqueue: Enqueue, n: int, interval: float, commits: dict[int, float]) -> None:
    """Enqueue probes 1..n, ``interval`` seconds apart on the loop's clock; record each commit time."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(1, n + 1):
        delay = t0 + (i - 1) * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        commits[i] = await _timed_enqueue(enqueue, i)


async def _timed_enqueue(enqueue: Enqueue, i: int) -> float:
    """Run ``enqueue(i)``; its commit time is what it returns, else the moment it returned."""
    commit = await enqueue(i)
    return commit if commit is not None else time.time()


def automate_available() -> tuple[bool, str]:
    try:
        importlib.import_module("automate.aio.cli")
    except ImportError as exc:
        return False, f"not available yet (automate.aio.cli cannot be imported: {exc})"
    return True, ""


def registered_systems(io_sleep: float) -> tuple[list[System], dict[str, str], set[str]]:
    """(systems that can run, {name: why not} for those that cannot, names left out unless asked for)."""
    systems: list[System] = [RawSystem(), ProcrastinateSystem()]
    unavailable: dict[str, str] = {}
    optional: set[str] = set()
    if importlib.util.find_spec("asyncpg") is not None:
        systems.append(PgqueuerSystem())
        # Its io test takes minutes (see PgqueuerPsycopgSystem): run it with --systems pgqueuer-psycopg.
        optional.add(PgqueuerPsycopgSystem.name)
    else:
        unavailable["pgqueuer"] = "not available (asyncpg, pgqueuer's primary driver, is not installed)"
    systems.append(PgqueuerPsycopgSystem())
    ok, why = automate_available()
    if ok:
        systems.append(AutomateSystem(io_sleep))
    else:
        unavailable["automate"] = why
    return systems, unavailable, optional


# =================================================================================================
# Harness side: processes and tests
# =================================================================================================


async def run_process(cmd: list[str], *, env: dict[str, str] | None = None, within: float) -> None:
    proc = await asyncio.create_subprocess_exec(*cmd, env=env)
    try:
        await asyncio.wait_for(proc.wait(), timeout=within)
    finally:
        await stop_process(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} ... exited with {proc.returncode}: {' '.join(cmd[1:6])} ...")


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    """Terminate a worker we started if it is still running (SIGTERM, then SIGKILL)."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout=10)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def commit_probe(admin: str) -> dict[str, float]:
    name = "bench_peers_commit_probe"
    url = await asyncio.to_thread(common.fresh_database, admin, name)
    try:
        return await asyncio.to_thread(common.commit_latency_ms, url)
    finally:
        await asyncio.to_thread(common.drop_database, admin, name)


async def fresh_db(admin: str, system: System, test: str) -> tuple[str, str]:
    name = f"bench_peers_{system.name}_{test}"
    url = await asyncio.to_thread(common.fresh_database, admin, name)
    await system.setup(url)
    return name, url


async def test_drain(system: System, admin: str, p: Params, *, io: bool) -> dict[str, Any]:
    n = p.io_jobs if io else p.jobs
    task = "sleep" if io else "noop"
    concurrency = p.io_concurrency if io else p.drain_concurrency
    name, db = await fresh_db(admin, system, "io" if io else "drain")
    try:
        t = time.perf_counter()
        await system.enqueue_many(db, n, task)
        enqueue_s = time.perf_counter() - t
        outcome = await system.run_until_drained(db, task, concurrency, p)
        left = await system.remaining(db)
    finally:
        await asyncio.to_thread(common.drop_database, admin, name)
    if left != 0 or outcome.jobs != n:
        raise RuntimeError(f"{system.name}: {outcome.jobs} of {n} jobs ran and {left} remain after the drain")
    rate = n / outcome.seconds
    result: dict[str, Any] = {
        "jobs": n,
        "concurrency": concurrency,
        "seconds": round(outcome.seconds, 4),
        "jobs_per_s": round(rate, 1),
        "enqueue_s": round(enqueue_s, 3),
        "method": outcome.method,
        **outcome.detail,
    }
    if io:
        ideal = concurrency / p.io_sleep
        result.update(sleep_s=p.io_sleep, ideal_per_s=ideal, pct_of_ideal=round(100 * rate / ideal, 1))
    return result


async def test_latency(system: System, admin: str, p: Params) -> dict[str, Any]:
    name, db = await fresh_db(admin, system, "latency")
    try:
        pairs = await system.run_latency(db, p)
    finally:
        await asyncio.to_thread(common.drop_database, admin, name)
    lat = [start - commit for commit, start in pairs.values()]
    return {
        "jobs": p.latency_jobs,
        "interval_s": p.latency_interval,
        "observed": len(lat),
        "missing": p.latency_jobs - len(lat),
        **common.latency_summary(lat),
    }


# =================================================================================================
# Report
# =================================================================================================


def _get(results: dict[str, Any], system: str, test: str, key: str) -> float | None:
    value = results.get(system, {}).get(test, {})
    return value.get(key) if isinstance(value, dict) else None


def report(results: dict[str, Any], names: list[str], unavailable: dict[str, str], p: Params) -> list[list[Any]]:
    rows = []
    for s in names:
        drain = _get(results, s, "drain", "jobs_per_s")
        io = _get(results, s, "io", "jobs_per_s")
        rows.append([
            s,
            drain,
            common.ratio(drain, _get(results, "raw", "drain", "jobs_per_s")),
            io,
            _get(results, s, "io", "pct_of_ideal"),
            common.ratio(io, _get(results, "raw", "io", "jobs_per_s")),
            _get(results, s, "latency", "p50_ms"),
            _get(results, s, "latency", "p99_ms"),
        ])
    for s, why in unavailable.items():
        rows.append([f"{s}: {why.split(' (')[0]}", None, None, None, None, None, None, None])
    common.print_table(
        ["system", "drain jobs/s", "x raw", "io runs/s", "% ideal", "x raw", "p50 ms", "p99 ms"],
        rows,
        title=(f"workers: drain {p.jobs:,} no-op jobs (concurrency {p.drain_concurrency}), "
               f"io {p.io_jobs:,} x sleep({p.io_sleep:g}) at concurrency {p.io_concurrency} "
               f"(ideal {p.io_concurrency / p.io_sleep:,.0f}/s), wake latency {p.latency_jobs} jobs "
               f"{p.latency_interval * 1000:g} ms apart"),
    )
    for s in names:
        for test in TESTS:
            value = results.get(s, {}).get(test)
            if isinstance(value, str):
                print(f"  {s} {test}: {value}")
    return rows


def chart(results: dict[str, Any], names: list[str], p: Params, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"]

    def bars(ax: Any, values: list[float | None], title: str, ylabel: str) -> None:
        xs = range(len(names))
        heights = [v or 0 for v in values]
        ax.bar(xs, heights, color=colors[: len(names)])
        ax.set_xticks(list(xs), names, rotation=15)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        for x, v in zip(xs, values, strict=True):
            ax.annotate("n/a" if v is None else f"{v:,.0f}" if v >= 10 else f"{v:.1f}", (x, v or 0),
                        ha="center", va="bottom", fontsize=8)

    bars(axes[0], [_get(results, s, "drain", "jobs_per_s") for s in names],
         f"drain {p.jobs:,} no-op jobs", "jobs/s (higher is better)")
    bars(axes[1], [_get(results, s, "io", "jobs_per_s") for s in names],
         f"{p.io_jobs:,} x sleep({p.io_sleep:g}s), concurrency {p.io_concurrency}", "runs/s (higher is better)")
    ideal = p.io_concurrency / p.io_sleep
    axes[1].axhline(ideal, color="grey", linestyle="--", linewidth=1)
    axes[1].annotate(f"ideal {ideal:,.0f}/s", (len(names) - 0.5, ideal), ha="right", va="bottom", fontsize=8)
    x = list(range(len(names)))
    p50 = [_get(results, s, "latency", "p50_ms") or 0 for s in names]
    p99 = [_get(results, s, "latency", "p99_ms") or 0 for s in names]
    axes[2].bar([i - 0.2 for i in x], p50, width=0.4, label="p50", color="#4c72b0")
    axes[2].bar([i + 0.2 for i in x], p99, width=0.4, label="p99", color="#dd8452")
    axes[2].set_xticks(x, names, rotation=15)
    axes[2].set_title(f"wake latency, {p.latency_jobs} jobs {p.latency_interval * 1000:g} ms apart", fontsize=10)
    axes[2].set_ylabel("ms, commit -> job start (lower is better)")
    axes[2].legend(fontsize=8)
    fig.suptitle("Same run, same PostgreSQL server, one worker process each", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# =================================================================================================
# Main
# =================================================================================================


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a sanity run (about a minute)")
    parser.add_argument("--jobs", type=int, default=None, help="no-op jobs to drain (default 20000; quick 2000)")
    parser.add_argument("--io-jobs", type=int, default=None, help="sleep jobs (default 5000; quick 1000)")
    parser.add_argument("--io-sleep", type=float, default=0.05, help="seconds each io job sleeps (default 0.05)")
    parser.add_argument("--io-concurrency", type=int, default=100, help="concurrency of the io test (default 100)")
    parser.add_argument("--drain-concurrency", type=int, default=100,
                        help="concurrency of the drain test (default 100)")
    parser.add_argument("--batch-size", type=int, default=50,
                        help="claim batch where the system has one (default 50; pgqueuer: at most concurrency/2)")
    parser.add_argument("--latency-jobs", type=int, default=None, help="latency probes (default 200; quick 50)")
    parser.add_argument("--latency-interval", type=float, default=0.02, help="seconds between probes (0.02)")
    parser.add_argument("--systems", default=None, help="comma-separated subset (default: all registered)")
    parser.add_argument("--tests", default=",".join(TESTS), help=f"comma-separated subset of {','.join(TESTS)}")
    parser.add_argument("--uvloop", action="store_true", help="run every worker (and the harness) on uvloop")
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (2000 if args.quick else 20_000)
    args.io_jobs = args.io_jobs or (1000 if args.quick else 5000)
    args.latency_jobs = args.latency_jobs or (50 if args.quick else 200)
    args.test_list = [t for t in args.tests.split(",") if t]
    if bad := set(args.test_list) - set(TESTS):
        parser.error(f"unknown tests: {', '.join(sorted(bad))}")
    return args


async def amain(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    systems, unavailable, optional = registered_systems(args.io_sleep)
    if args.systems:
        wanted = [s for s in args.systems.split(",") if s]
        known = {s.name for s in systems} | set(unavailable)
        if bad := set(wanted) - known:
            raise SystemExit(f"unknown systems: {', '.join(sorted(bad))} (known: {', '.join(sorted(known))})")
        systems = [s for s in systems if s.name in wanted]
        unavailable = {k: v for k, v in unavailable.items() if k in wanted}
    else:
        for name in sorted(optional):
            print(f"bench: {name}: skipped by default (add it with --systems)", file=sys.stderr)
        systems = [s for s in systems if s.name not in optional]
    for name, why in unavailable.items():
        print(f"bench: {name}: {why}", file=sys.stderr)
    names = [s.name for s in systems]
    results: dict[str, dict[str, Any]] = {s.name: {} for s in systems}
    workdir = Path(tempfile.mkdtemp(prefix="automate-bench-peers-"))
    p = Params(args.jobs, args.io_jobs, args.io_sleep, args.io_concurrency, args.drain_concurrency,
               args.batch_size, args.latency_jobs, args.latency_interval, args.uvloop, workdir)
    try:
        with common.postgres_server() as admin:
            server = await asyncio.to_thread(common.server_info, admin)
            commit_before = await commit_probe(admin)
            # Test by test, every system in turn: slow drift on a shared machine spreads over all of them.
            for test in args.test_list:
                for system in systems:
                    t = time.perf_counter()
                    try:
                        if test == "latency":
                            res: Any = await test_latency(system, admin, p)
                        else:
                            res = await test_drain(system, admin, p, io=test == "io")
                        summary = (f"{res['p50_ms']:.1f} / {res['p99_ms']:.1f} ms p50/p99" if test == "latency"
                                   else f"{res['jobs_per_s']:,.0f} jobs/s")
                    except NotMeasured as exc:
                        res = f"not measured: {exc}"
                        summary = res
                    except Exception as exc:  # one failing system must not hide the others' numbers
                        res = f"failed: {type(exc).__name__}: {exc}"
                        summary = res
                    results[system.name][test] = res
                    print(f"  {test:<8} {system.name:<14} {summary}  ({time.perf_counter() - t:.1f}s)",
                          file=sys.stderr)
            commit_after = await commit_probe(admin)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    for s in names:
        raw_drain = _get(results, "raw", "drain", "jobs_per_s")
        raw_io = _get(results, "raw", "io", "jobs_per_s")
        results[s]["ratios_vs_raw"] = {
            "drain": _round(common.ratio(_get(results, s, "drain", "jobs_per_s"), raw_drain)),
            "io": _round(common.ratio(_get(results, s, "io", "jobs_per_s"), raw_io)),
            "latency_p50": _round(common.ratio(_get(results, s, "latency", "p50_ms"),
                                               _get(results, "raw", "latency", "p50_ms"))),
        }
    data = {
        "benchmark": "peers",
        "what": "one worker process per system, each in a fresh database on the same server, same run",
        "baseline": "raw: asyncio + psycopg SKIP LOCKED batch claim / batch complete loop (the ceiling)",
        "config": {k: v for k, v in vars(p).items() if k != "workdir"},
        "versions": _versions(),
        "server": server,
        "commit_latency": {"before": commit_before, "after": commit_after},
        "machine": common.machine_info(),
        "systems": {s.name: {"label": s.label, "notes": s.notes} for s in systems},
        "unavailable": unavailable,
        "results": results,
        "wall_seconds": round(time.perf_counter() - began, 1),
    }
    path = common.write_results("peers", data)
    report(results, names, unavailable, p)
    print(f"one-row commit: p50 {commit_before['p50_ms']:.2f} ms before the tests, "
          f"{commit_after['p50_ms']:.2f} ms after (a worker that commits each job on its own, one at a time, "
          "stays under about 1000/p50 jobs/s)")
    png = common.RESULTS_DIR / "peers.png"
    chart(results, names, p, png)
    print(f"results: {path.relative_to(common.REPO_ROOT)}, {png.relative_to(common.REPO_ROOT)}  "
          f"({data['wall_seconds']}s)")
    failed = [f"{s} {t}" for s in names for t in TESTS if str(results[s].get(t, "")).startswith("failed")]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("procrastinate", "pgqueuer", "psycopg", "psycopg-pool", "django-automate"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--worker" in argv:
        return worker_entry(argv)
    args = parse_args(argv)
    return _run(amain(args), args.uvloop)


if __name__ == "__main__":
    sys.exit(main())

"""The worker side of bench_peers.py: what runs inside a worker process (``peers_workers.py --worker NAME``).

Each worker drains the jobs of one system (the raw SKIP LOCKED loop, procrastinate, pgqueuer) with a job
function that records its start times (``Recorder``), written as JSON when the worker returns. The
harness (``bench_peers.py``) starts it, reads the file and computes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from peers_base import TASK_NAME

READY_SUFFIX = ".ready"


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

# The raw loop works on automate's own outbox (the schema from Django's migrate; events and jobs written
# as emit_event writes them): the ceiling for moving automate's jobs at all, with nothing else done.
RAW_CLAIM = """
UPDATE automate_outbox_job j SET status = 'CLAIMED', worker_id = 'raw', attempts = attempts + 1,
    claim_token = claim_token + 1, lease_expires_at = now() + interval '30 seconds'
WHERE id = ANY(ARRAY(
    SELECT id FROM automate_outbox_job WHERE status = 'PENDING' AND available_at <= now()
    ORDER BY priority DESC, id LIMIT %(n)s FOR UPDATE SKIP LOCKED
))
RETURNING j.id, (SELECT (e.payload->>'i')::int FROM automate_event e WHERE e.id = j.event_id)
"""
RAW_COMPLETE = """
UPDATE automate_outbox_job SET status = 'COMPLETED', finished_at = now(), lease_expires_at = NULL
WHERE id = ANY(%(ids)s)
"""
RAW_ENQUEUE_MANY = """
WITH ev AS (
    INSERT INTO automate_event (id, type, payload, source, traceparent, tracestate, created_at)
    SELECT gen_random_uuid(), 'bench.noop', jsonb_build_object('i', g), '', '', '', now()
    FROM generate_series(%(first)s::int, %(last)s::int) AS g
    RETURNING id
)
INSERT INTO automate_outbox_job (kind, status, priority, event_id, available_at, attempts, max_attempts)
SELECT 'event', 'PENDING', 0, ev.id, now(), 0, 4 FROM ev
"""
# One simple query, one transaction, one round trip: the NOTIFY is delivered when the INSERTs commit.
RAW_ENQUEUE_ONE = """
WITH ev AS (
    INSERT INTO automate_event (id, type, payload, source, traceparent, tracestate, created_at)
    VALUES (gen_random_uuid(), 'bench.probe', jsonb_build_object('i', %(i)s::int), '', '', '', now())
    RETURNING id
)
INSERT INTO automate_outbox_job (kind, status, priority, event_id, available_at, attempts, max_attempts)
SELECT 'event', 'PENDING', 0, ev.id, now(), 0, 4 FROM ev;
NOTIFY automate_outbox
"""
RAW_REMAINING = "SELECT count(*) FROM automate_outbox_job WHERE status <> 'COMPLETED'"
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
                await listen_conn.execute("LISTEN automate_outbox")
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

        # The batch as given (pgqueuer refuses max_concurrent_tasks < 2 x batch_size: the harness only
        # lowers it for a test whose concurrency is too small for it, see PgqueuerSystem.batch_for).
        kwargs: dict[str, Any] = {"batch_size": opts.batch_size, "max_concurrent_tasks": opts.concurrency}
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
    parser = argparse.ArgumentParser(prog="peers_workers.py")
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



if __name__ == "__main__":
    sys.exit(worker_entry(sys.argv[1:]))

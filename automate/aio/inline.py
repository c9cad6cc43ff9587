"""Running given jobs to their end in the calling process: ``WORKER_MODE = "synchronous"``.

The same engine as the worker (executor, recorder, PostgreSQL store), on a private event loop, for the
jobs one commit wrote and no others: they are claimed by event id or job id (``CLAIM_JOBS_FOR``), under a
lease that is extended while they run, and their records are exactly a worker's. A job that parks (a
durable ``delay``, a retry wait longer than ``EXECUTION.park_after_seconds``) is left in the outbox,
PENDING until then, for a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from .config import WorkerConfig
from .executor import Executor
from .matcher import WorkflowCache
from .recorder import Recorder
from .store import PgStore

__all__ = ["run_jobs"]


async def run_jobs(cfg: WorkerConfig, *, event_ids: Sequence[str] = (), job_ids: Sequence[int] = ()) -> int:
    """Claim and run the PENDING, due jobs of these events / with these ids; return how many ran."""
    store = PgStore(cfg.conninfo, pool_size=2)
    recorder = Recorder(store, cfg.worker_id, interval=0)
    executor = Executor(cfg, store, recorder, WorkflowCache(store, max_age=0.0), asyncio.Semaphore(cfg.concurrency))
    await store.open()
    try:
        jobs = await store.claim_for(cfg.worker_id, cfg.lease_seconds, event_ids=event_ids, job_ids=job_ids)
        if not jobs:
            return 0
        keys = [j.key for j in jobs]

        async def leases() -> None:
            while True:
                await asyncio.sleep(cfg.lease_renew_every)
                await store.extend_leases(cfg.worker_id, keys, cfg.lease_seconds)

        # Closing order: the job tasks end first, then the lease and flush tasks are cancelled, then the
        # store closes (finally).
        async with asyncio.TaskGroup() as tg:
            side = [tg.create_task(recorder.run_forever(), name="recorder"), tg.create_task(leases(), name="leases")]
            try:
                await asyncio.gather(*(executor.process(job) for job in jobs))
                await recorder.flush()
            finally:
                for task in side:
                    task.cancel()
        return len(jobs)
    finally:
        with contextlib.suppress(Exception):
            await store.close()

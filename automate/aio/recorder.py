"""Group commit of status writes.

Concurrent runs hand their row states to the recorder, which writes everything gathered so far in one
transaction (set-based statements, see ``PgStore.flush``) while new states gather for the next flush.
A row that changes twice between flushes (RUNNING, then SUCCEEDED) is written once, in its final state.

Durability: a job's completion is written in the same or a later transaction than its runs' and steps'
rows, so a crash never leaves a COMPLETED job whose progress is missing. ``finish()`` returns once the
completion is committed; only then does the job's slot free up.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import psycopg

from .store import FlushBatch, JobStore, RunRow, StepRow

__all__ = ["Recorder"]

log = logging.getLogger(__name__)


class Recorder:
    def __init__(
        self,
        store: JobStore,
        worker_id: str,
        *,
        interval: float = 0.002,
        on_lost: Callable[[set[int]], None] | None = None,
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.interval = interval
        self.on_lost = on_lost
        self._batch = FlushBatch()
        self._waiters: dict[int, asyncio.Future[bool]] = {}
        self._dirty = asyncio.Event()
        self.flushes = 0

    # -- called by the executor ------------------------------------------------------------------------
    def run(self, row: RunRow) -> None:
        self._batch.runs[row.id] = row
        self._dirty.set()

    def step(self, row: StepRow) -> None:
        self._batch.steps[(row.run_id, row.step_id, row.attempt)] = row
        self._dirty.set()

    def finish(self, job_id: int, status: str, error: str = "") -> asyncio.Future[bool]:
        """Complete (COMPLETED/FAILED) a job; the future resolves True once committed, False if the
        job's lease had been taken over (nothing of it was written)."""
        self._batch.finished[job_id] = (status, error)
        return self._waiter(job_id)

    def park(self, job_id: int, delay: float, error: str) -> asyncio.Future[bool]:
        """Give a job back until ``delay`` seconds from now (a long retry wait)."""
        self._batch.parked[job_id] = (delay, error)
        return self._waiter(job_id)

    def _waiter(self, job_id: int) -> asyncio.Future[bool]:
        fut = self._waiters.get(job_id)
        if fut is None or fut.done():
            fut = self._waiters[job_id] = asyncio.get_running_loop().create_future()
        self._dirty.set()
        return fut

    # -- the flushing task ---------------------------------------------------------------------------
    async def run_forever(self) -> None:
        failures = 0
        while True:
            await self._dirty.wait()
            if self.interval:
                await asyncio.sleep(self.interval)  # let concurrent runs add to this flush
            try:
                await self.flush()
                failures = 0
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                failures += 1
                delay = random.uniform(0, min(5.0, 0.05 * 2**failures))
                log.warning("automate.recorder.flush_failed", extra={"error": str(exc), "delay_s": delay})
                await asyncio.sleep(delay)

    async def flush(self) -> None:
        """Write what has gathered. On a database error the batch is kept for the next try."""
        self._dirty.clear()
        batch, self._batch = self._batch, FlushBatch()
        if not batch:
            return
        try:
            # Shielded: a flush in progress completes even if the worker is being cancelled.
            owned = await asyncio.shield(self.store.flush(self.worker_id, batch))
        except BaseException:
            self._merge_back(batch)
            raise
        self.flushes += 1
        lost = batch.job_ids() - owned
        for job_id in list(batch.finished) + list(batch.parked):
            fut = self._waiters.pop(job_id, None)
            if fut is not None and not fut.done():
                fut.set_result(job_id in owned)
        if lost and self.on_lost is not None:
            self.on_lost(lost)

    def _merge_back(self, old: FlushBatch) -> None:
        new = self._batch
        old.runs.update(new.runs)
        old.steps.update(new.steps)
        old.finished.update(new.finished)
        old.parked.update(new.parked)
        self._batch = old
        self._dirty.set()

    @property
    def pending(self) -> bool:
        return bool(self._batch)

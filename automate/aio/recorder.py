"""Group commit of status writes.

Concurrent runs hand their row states to the recorder, which writes everything gathered so far in one
transaction (set-based statements, see ``PgStore.flush``) while new states gather for the next flush.
A row that changes twice between flushes (RUNNING, then SUCCEEDED) is written once, in its final state.
Going further, a RUNNING row is held back for ``defer`` seconds: most steps finish sooner, and then only
their final state is ever written (one INSERT instead of an INSERT and an UPDATE per run and per step).
Holding RUNNING back loses nothing on a crash: a step recorded as RUNNING is run again on recovery, just
like one that was not recorded. A step row is never written without its run row (the foreign key).

Durability: a job's completion is written in the same or a later transaction than its runs' and steps'
rows, so a crash never leaves a COMPLETED job whose progress is missing. ``finish()`` returns once the
completion is committed; only then does the job's slot free up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable

import psycopg

from .store import FlushBatch, JobStore, RunRow, StepRow

_OPEN = ("PENDING", "RUNNING")

__all__ = ["Recorder"]

log = logging.getLogger(__name__)


class Recorder:
    def __init__(
        self,
        store: JobStore,
        worker_id: str,
        *,
        interval: float = 0.002,
        defer: float = 0.25,
        on_lost: Callable[[set[int]], None] | None = None,
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.interval = interval
        self.defer = defer
        self.on_lost = on_lost
        self._batch = FlushBatch()
        self._held_runs: dict[uuid.UUID, tuple[RunRow, float]] = {}
        self._held_steps: dict[tuple[uuid.UUID, str, int], tuple[StepRow, float]] = {}
        self._waiters: dict[int, asyncio.Future[bool]] = {}
        self._dirty = asyncio.Event()
        self.flushes = 0

    # -- called by the executor ------------------------------------------------------------------------
    def run(self, row: RunRow) -> None:
        if row.status in _OPEN and row.id not in self._batch.runs:
            self._held_runs.setdefault(row.id, (row, time.monotonic()))
            self._dirty.set()  # wakes the flusher, which then sleeps until the hold is over
            return
        self._held_runs.pop(row.id, None)
        self._batch.runs[row.id] = row
        self._dirty.set()

    def step(self, row: StepRow) -> None:
        key = (row.run_id, row.step_id, row.attempt)
        if row.status in _OPEN:
            self._held_steps[key] = (row, self._held_steps.get(key, (row, time.monotonic()))[1])
            self._dirty.set()
            return
        self._held_steps.pop(key, None)
        self._batch.steps[key] = row
        self._dirty.set()

    def _release_held(self) -> None:
        """Move into the batch: rows held longer than ``defer``, and the run of every step in it."""
        cutoff = time.monotonic() - self.defer
        batch = self._batch
        for key, (step, since) in list(self._held_steps.items()):
            if since <= cutoff:
                batch.steps[key] = step
                del self._held_steps[key]
        for run_id, (run, since) in list(self._held_runs.items()):
            if since <= cutoff:
                batch.runs[run_id] = run
                del self._held_runs[run_id]
        for step in list(batch.steps.values()):
            held = self._held_runs.pop(step.run_id, None)
            if held is not None:
                batch.runs[step.run_id] = held[0]

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
            if self._held_runs or self._held_steps:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._dirty.wait(), timeout=self.defer)
            else:
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
        self._release_held()
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

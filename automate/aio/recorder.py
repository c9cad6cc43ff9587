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

Containment: a row the database refuses (or one that cannot even be encoded) must not fail the group
commit of every other job. On any error that is not a lost connection, the batch is bisected by job and
the halves are written in their own transactions until the job that cannot be written is found; that job
alone is failed, with the database's reason (``_fail_unwritable``), and the others are written as usual.
A lost connection keeps the whole batch for the next try.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from .store import AuditRow, FlushBatch, JobKey, JobStore, RunRow, StepRow

_OPEN = ("PENDING", "RUNNING")
_CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, OSError)

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
        on_lost: Callable[[set[JobKey]], None] | None = None,
        on_settling: Callable[[JobKey], None] | None = None,
        on_settled: Callable[[list[tuple[JobKey, bool]]], None] | None = None,
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.interval = interval
        self.defer = defer
        self.on_lost = on_lost
        # Told when a job's outcome (finish or park) is handed over: its work is done and only the commit
        # is left, so the worker can claim the next job now instead of after the flush.
        self.on_settling = on_settling
        # Detached mode (the worker): when set, finish() and park() do not make each job's task wait for
        # its commit (a future and a task wake-up per job); every flush reports its jobs' outcomes here at
        # once instead, as (key, still owned) pairs, and the futures they return are already resolved
        # (True: handed over). Without it (WORKER_MODE "synchronous"), each future resolves on the commit.
        self.on_settled = on_settled
        self._handed: asyncio.Future[bool] | None = None
        self._batch = FlushBatch()
        self._held_runs: dict[uuid.UUID, tuple[RunRow, float]] = {}
        self._held_steps: dict[tuple[uuid.UUID, str, int], tuple[StepRow, float]] = {}
        self._waiters: dict[JobKey, asyncio.Future[bool]] = {}
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

    def audit(self, row: AuditRow) -> None:
        """An audit entry, written with the next group commit (``row.details`` already redacted)."""
        self._batch.audit.append(row)
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
        # The runs of one job are written together: a job that resumes after a crash continues the runs
        # the database holds and matches nothing again, so none of its runs may be missing there.
        if self._held_runs and batch.runs:
            jobs = {r.job_id for r in batch.runs.values()}
            for run_id, (run, _since) in list(self._held_runs.items()):
                if run.job_id in jobs:
                    batch.runs[run_id] = run
                    del self._held_runs[run_id]

    def finish(self, key: JobKey, status: str, error: str = "", result: Any = None) -> asyncio.Future[bool]:
        """Complete (COMPLETED/FAILED) a job; the future resolves True once committed, False if the
        job's lease had been taken over (nothing of it was written). ``result`` (a task's outcome, JSON)
        is stored with it as ``payload.result``."""
        self._batch.parked.pop(key, None)
        self._batch.finished[key] = (status, error)
        if result is not None:
            self._batch.results[key] = result
        if self.on_settling is not None:
            self.on_settling(key)
        return self._waiter(key)

    def park(self, key: JobKey, delay: float, error: str, *, counted: bool = False) -> asyncio.Future[bool]:
        """Give a job back until ``delay`` seconds from now: a long retry wait of a step (uncounted), or
        a counted retry of the whole job after a failure of the runtime around it."""
        self._batch.finished.pop(key, None)
        self._batch.parked[key] = (delay, error, counted)
        if self.on_settling is not None:
            self.on_settling(key)
        return self._waiter(key)

    def _waiter(self, key: JobKey) -> asyncio.Future[bool]:
        if self.on_settled is not None:
            self._dirty.set()
            if self._handed is None or self._handed.get_loop() is not asyncio.get_running_loop():
                self._handed = asyncio.get_running_loop().create_future()
                self._handed.set_result(True)
            return self._handed
        fut = self._waiters.get(key)
        if fut is None or fut.done():
            fut = self._waiters[key] = asyncio.get_running_loop().create_future()
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
            except _CONNECTION_ERRORS as exc:
                failures += 1
                delay = random.uniform(0, min(5.0, 0.05 * 2**failures))
                log.warning("automate.recorder.flush_failed", extra={"error": str(exc), "delay_s": delay})
                await asyncio.sleep(delay)

    async def flush(self) -> None:
        """Write what has gathered. On a lost connection the batch is kept for the next try; any other
        error is contained to the job whose rows caused it."""
        self._dirty.clear()
        self._release_held()
        batch, self._batch = self._batch, FlushBatch()
        if not batch:
            return
        try:
            owned = await self._write(batch)
        except BaseException:
            self._merge_back(batch)
            raise
        self.flushes += 1
        self._settle(batch, owned)

    async def _write(self, batch: FlushBatch) -> set[JobKey]:
        try:
            # Shielded: a flush in progress completes even if the worker is being cancelled.
            return await asyncio.shield(self.store.flush(self.worker_id, batch))
        except _CONNECTION_ERRORS:
            raise
        except Exception as exc:
            return await self._isolate(batch, exc)

    async def _isolate(self, batch: FlushBatch, exc: Exception) -> set[JobKey]:
        """Bisect ``batch`` by job until the job(s) whose rows the database refuses are found."""
        keys = sorted(batch.job_keys())
        if len(keys) == 1:
            return await self._fail_unwritable(batch, keys[0], exc)
        log.warning("automate.recorder.isolating", extra={"jobs": len(keys), "error": _db_reason(exc)})
        owned: set[JobKey] = set()
        for half in (set(keys[: len(keys) // 2]), set(keys[len(keys) // 2 :])):
            owned |= await self._write(batch.only(half))
        return owned

    async def _fail_unwritable(self, batch: FlushBatch, key: JobKey, exc: Exception) -> set[JobKey]:
        """One job's rows cannot be written: end its open runs and the job FAILED with the reason, and
        drop the rows that could not be stored. The job is then no longer claimed, so its task is
        cancelled (``on_lost``) and nothing more of it is written."""
        reason = f"could not record the job's progress: {_db_reason(exc)}"
        log.error("automate.recorder.unwritable_job", extra={"job_id": key[0], "error": reason})
        runs = {
            rid: RunRow(r.id, r.version_id, r.event_id, r.job_id, r.token, "FAILED", r.trace_id, {}, reason,
                        r.started_at, r.finished_at)
            for rid, r in batch.runs.items()
        }
        # First the runs (ended FAILED, outputs dropped) with the job; if even that is refused, the job alone.
        for salvage in (FlushBatch(runs=runs, finished={key: ("FAILED", reason)}),
                        FlushBatch(finished={key: ("FAILED", reason)})):
            try:
                await asyncio.shield(self.store.flush(self.worker_id, salvage))
                break
            except _CONNECTION_ERRORS:
                raise
            except Exception as exc2:
                log.error("automate.recorder.unwritable_job", extra={"job_id": key[0], "error": _db_reason(exc2)})
        # Not owned any more either way (FAILED, or left to its lease): the caller's settle tells the
        # job's waiters and cancels its task.
        return set()

    def _settle(self, batch: FlushBatch, owned: set[JobKey]) -> None:
        lost = batch.job_keys() - owned
        ended = list(batch.finished) + list(batch.parked)
        if self.on_settled is not None:
            if ended:
                self.on_settled([(key, key in owned) for key in ended])
        else:
            for key in ended:
                fut = self._waiters.pop(key, None)
                if fut is not None and not fut.done():
                    fut.set_result(key in owned)
        if lost and self.on_lost is not None:
            self.on_lost(lost)

    def _merge_back(self, old: FlushBatch) -> None:
        new = self._batch
        old.runs.update(new.runs)
        old.steps.update(new.steps)
        old.finished.update(new.finished)
        old.parked.update(new.parked)
        old.audit.extend(new.audit)
        old.results.update(new.results)
        self._batch = old
        self._dirty.set()

    @property
    def pending(self) -> bool:
        return bool(self._batch)


def _db_reason(exc: BaseException) -> str:
    """The database's (or encoder's) one-line reason, without the rows' values."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or str(exc).split("\n", 1)[0] or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]

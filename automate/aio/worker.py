"""The composition root: one asyncio process that listens, claims, executes and records.

Long-lived parts run as tasks of one TaskGroup, so a side task that dies stops the worker loudly:

    listener   LISTEN automate_outbox / automate_workflows on a dedicated connection; wakes the claimer
    claimer    claims up to the free slots (capped at the batch size), one job task per claimed job
    leases     extends the leases of in-flight jobs; a job whose lease was taken over is cancelled here
    reaper     makes jobs whose lease expired (a crashed worker's) claimable again
    recorder   group-commits status writes

Shutdown (SIGTERM/SIGINT): stop claiming; let in-flight jobs finish within the grace period; cancel the
rest and release their jobs for immediate re-claim; flush the recorder; close the listener, then the
pool (the reverse of the order they were opened in). A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass

import psycopg

from automate import queries
from automate.conf import get_settings
from automate.connectors.http import aclose_clients
from automate.connectors.llm.client import aclose_clients as aclose_llm_clients

from . import metrics
from .config import WorkerConfig
from .executor import Executor
from .listener import Listener
from .matcher import WorkflowCache
from .recorder import Recorder
from .store import ClaimedJob, JobKey, JobStore, PgStore

__all__ = ["Worker", "WorkerStats"]

log = logging.getLogger(__name__)

_DB_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, OSError)


@dataclass(slots=True)
class WorkerStats:
    """Counters of one worker process (outcomes are in the database: OutboxJob.status)."""

    claimed: int = 0  # jobs claimed
    lost: int = 0  # jobs whose lease was taken over while they ran
    claims: int = 0  # claim statements that returned rows or were polls


class _Stop(Exception):  # ends the TaskGroup
    pass


class Worker:
    def __init__(self, cfg: WorkerConfig, store: JobStore | None = None, *, listen: bool = True) -> None:
        """``store`` defaults to PostgreSQL at ``cfg.conninfo``; ``listen=False`` (an in-memory store)
        runs without the LISTEN connection, on the fallback poll alone."""
        self.cfg = cfg
        self.listen = listen
        self.store: JobStore = store or PgStore(cfg.conninfo, pool_size=cfg.pool_size)
        self.stats = WorkerStats()
        self.recorder = Recorder(
            self.store, cfg.worker_id, interval=cfg.flush_interval, on_lost=self._lost, on_settling=self._settling,
            on_settled=self._settled_jobs,
        )
        self.workflows = WorkflowCache(self.store, max_age=max(cfg.poll_interval, 1.0))
        self.semaphore = metrics.semaphore(cfg.concurrency)
        self.executor = Executor(cfg, self.store, self.recorder, self.workflows, self.semaphore)
        self.executor.on_park = self._wake_after
        self.listener = Listener(
            cfg.conninfo,
            (queries.NOTIFY_CHANNEL, queries.WORKFLOWS_CHANNEL),
            self._notified,
            health_interval=cfg.health_interval,
            on_connected=self.wake,
        )
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        # job id -> (claim token, task). Keyed by id: a job claimed again under a new token (this worker
        # lost the lease during an outage and won it back) replaces, and cancels, its stale task.
        self._inflight: dict[int, tuple[int, asyncio.Task[None]]] = {}
        # In-flight jobs whose work is done and whose outcome waits for the recorder's commit. They keep
        # their lease (they are still in _inflight, and owned until the commit says so) but no longer take
        # a slot: a slot waiting on a commit is a slot idle for a whole flush, which capped the drain at
        # slots / (flush latency). At most another `prefetch` of them, so a slow commit still holds claiming
        # back, and `--prefetch 0` still holds exactly `concurrency` jobs.
        self._settled: set[int] = set()
        self._disabled_logged = False
        self._signals = 0
        self.ready = asyncio.Event()

    # -- events from other parts ---------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def _wake_after(self, delay: float) -> None:
        """A job was parked for ``delay`` seconds: claim again when it is due, not only at the next poll
        (another worker may take it first; the claim then finds nothing)."""
        if not self._stopping.is_set():
            asyncio.get_running_loop().call_later(max(delay, 0.0) + 0.005, self._wake.set)

    def _notified(self, channel: str) -> None:
        metrics.notified()
        if channel == queries.WORKFLOWS_CHANNEL:
            self.workflows.invalidate()
        self._wake.set()

    def _settling(self, key: JobKey) -> None:
        entry = self._inflight.get(key[0])
        if entry is not None and entry[0] == key[1] and key[0] not in self._settled:
            self._settled.add(key[0])
            self._slot_free.set()

    def _settled_jobs(self, outcomes: list[tuple[JobKey, bool]]) -> None:
        """A flush committed (or, for a lost claim, dropped) these jobs' outcomes: they leave the in-flight
        set here, not in their tasks, which ended when they handed the outcome over."""
        for (job_id, token), _owned in outcomes:
            entry = self._inflight.get(job_id)
            if entry is not None and entry[0] == token and job_id in self._settled:
                del self._inflight[job_id]
                self._settled.discard(job_id)
        self._slot_free.set()
        if self.cfg.drain:
            self._wake.set()

    def _lost(self, keys: set[JobKey]) -> None:
        for job_id, token in keys:
            entry = self._inflight.get(job_id)
            if entry is not None and entry[0] == token and not entry[1].done():
                log.warning("automate.job.lease_lost", extra={"job_id": job_id})
                self.stats.lost += 1
                entry[1].cancel()

    def _enabled(self) -> bool:
        """DJANGO_AUTOMATE.ENABLED, read at every claim (a worker started disabled stays disabled)."""
        enabled = self.cfg.enabled and get_settings().ENABLED
        if not enabled and not self._disabled_logged:
            log.warning("automate.worker.disabled: DJANGO_AUTOMATE.ENABLED is False; claiming nothing")
        self._disabled_logged = not enabled
        return enabled

    def request_stop(self) -> None:
        """First call: graceful drain. Second call: exit at once."""
        self._signals += 1
        if self._signals == 1:
            log.info("automate.worker.stopping", extra={"grace_s": self.cfg.shutdown_grace})
            self._stopping.set()
            self._wake.set()
            self._slot_free.set()
        else:
            log.warning("automate.worker.hard_stop")
            raise SystemExit(1)

    # -- the process ---------------------------------------------------------------------------------
    async def run(self, *, install_signals: bool = False) -> WorkerStats:
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal)
        await self.store.open()
        try:
            try:
                async with asyncio.TaskGroup() as tg:
                    if self.listen:
                        tg.create_task(self.listener.run(), name="listener")
                    tg.create_task(self.recorder.run_forever(), name="recorder")
                    if self.cfg.enabled:  # a disabled worker touches no job: no leases, no recovery
                        tg.create_task(self._lease_loop(), name="leases")
                        tg.create_task(self._reaper_loop(), name="reaper")
                    tg.create_task(self._main(tg), name="claimer")
            except* _Stop:
                pass
        finally:
            # Closing order: the TaskGroup has ended the listener, the side tasks and every step; then the
            # connectors' shared HTTP client of this loop; the pool goes last.
            try:
                await aclose_clients()
                await aclose_llm_clients()
            finally:
                await self.store.close()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        return self.stats

    def _on_signal(self) -> None:
        try:
            self.request_stop()
        except SystemExit:
            # A second signal: leave now. Claimed jobs come back when their leases expire.
            import os

            os._exit(1)

    async def _main(self, tg: asyncio.TaskGroup) -> None:
        async with asyncio.TaskGroup() as jobs:
            if not self._enabled():
                self.ready.set()
                if not self.cfg.drain:
                    await self._stopping.wait()
            else:
                await self._claim_loop(jobs)
            await self._drain_inflight()
        # Final flush of everything recorded, then end the side tasks.
        try:
            await self.recorder.flush()
        except _DB_ERRORS as exc:
            log.warning(
                "automate.worker.final_flush_failed: the jobs' leases will expire and they run again",
                extra={"error": str(exc)},
            )
        raise _Stop

    async def _claim_loop(self, jobs: asyncio.TaskGroup) -> None:
        if self.listen:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.listener.connected.wait(), timeout=10)
        self.ready.set()
        failures = 0
        # Claim in worthwhile batches: while jobs are in flight, wait until at least half a batch of slots
        # is free instead of claiming one job per freed slot (one round trip per job).
        min_claim = max(1, min(self.cfg.batch_size, self.cfg.concurrency) // 2)
        # Prefetch: up to `prefetch` (default: one batch) more jobs than the semaphore admits steps, so a
        # step that finishes hands its permit to a job already claimed instead of waiting for a flush and
        # a claim round trip. `--prefetch 0` holds exactly `concurrency` jobs.
        slots = self.cfg.concurrency + self.cfg.prefetch_jobs
        while not self._stopping.is_set():
            if not self._enabled():
                await self._wait_any(self._stopping, self.cfg.poll_interval)
                continue
            settled = len(self._settled)
            free = min(slots - (len(self._inflight) - settled), slots + self.cfg.prefetch_jobs - len(self._inflight))
            if free <= 0 or (free < min_claim and len(self._inflight) > settled):
                self._slot_free.clear()
                await self._wait_any(self._slot_free, None)
                continue
            limit = min(free, self.cfg.batch_size)
            self._wake.clear()  # before the claim, so a NOTIFY that arrives during it is not lost
            try:
                claimed = await self.store.claim(self.cfg.worker_id, limit, self.cfg.lease_seconds)
                failures = 0
            except _DB_ERRORS as exc:
                failures += 1
                delay = min(5.0, 0.05 * 2**failures)
                log.warning("automate.claim.failed", extra={"error": str(exc), "delay_s": delay})
                await self._wait_any(self._stopping, delay)
                continue
            self.stats.claims += 1
            metrics.claimed(len(claimed))
            for job in claimed:
                self._start(jobs, job)
            if claimed:
                # There may be more waiting: a claim returns fewer than asked for not only when the queue
                # runs dry but also when other workers hold rows locked (SKIP LOCKED passes them), so only
                # a claim that found nothing waits for a NOTIFY or the poll.
                continue
            if self.cfg.drain and not self._inflight and not await self._has_work():
                log.info("automate.worker.drained")
                return
            await self._wait_any(self._wake, self.cfg.poll_interval if not self.cfg.drain else 0.05)
            metrics.waited(self._wake.is_set())

    async def _has_work(self) -> bool:
        try:
            return await self.store.has_work() or self.recorder.pending
        except _DB_ERRORS:
            return True

    async def _wait_any(self, event: asyncio.Event, limit_s: float | None) -> None:
        """Wait for ``event`` (or a stop request, which sets every event) for at most ``limit_s``.

        No helper tasks: this is on the wake-up path, where every loop iteration shows in the latency."""
        if self._stopping.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit_s):
                await event.wait()

    def _start(self, jobs: asyncio.TaskGroup, job: ClaimedJob) -> None:
        self.stats.claimed += 1
        stale = self._inflight.get(job.id)
        if stale is not None:  # claimed again under a new token: the old claim's task has lost the job
            log.warning("automate.job.reclaimed_while_running", extra={"job_id": job.id})
            self.stats.lost += 1
            stale[1].cancel()
            self._settled.discard(job.id)
        task = jobs.create_task(self._job(job), name=f"job {job.id}")
        self._inflight[job.id] = (job.token, task)

    async def _job(self, job: ClaimedJob) -> None:
        try:
            await self.executor.process(job)
        except asyncio.CancelledError:
            pass  # lease lost or shutdown: the job is released (or already someone else's)
        except Exception as exc:  # process() contains its errors; this is the last line of defence
            log.exception("automate.job.crashed", extra={"job_id": job.id})
            with contextlib.suppress(Exception):
                self.recorder.park(job.key, 1.0, f"worker error: {type(exc).__name__}", counted=True)
        finally:
            entry = self._inflight.get(job.id)
            # A job whose outcome was handed over stays in flight (leased) until its flush settles it.
            if entry is not None and entry[0] == job.token and job.id not in self._settled:
                del self._inflight[job.id]
            self._slot_free.set()
            if self.cfg.drain:
                self._wake.set()

    async def _drain_inflight(self) -> None:
        if not self._inflight:
            return
        tasks = [t for _tok, t in self._inflight.values()]
        _done, pending = await asyncio.wait(tasks, timeout=self.cfg.shutdown_grace)
        if pending:
            keys = [(jid, tok) for jid, (tok, t) in self._inflight.items() if t in pending]
            log.warning("automate.worker.cancelling", extra={"jobs": len(keys)})
            for t in pending:
                t.cancel()
            await asyncio.wait(pending)
            try:
                await self.recorder.flush()  # keep the progress that was made
                await self.store.release(self.cfg.worker_id, keys)
            except _DB_ERRORS as exc:
                log.warning(
                    "automate.worker.release_failed: the jobs come back when their leases expire",
                    extra={"jobs": [k[0] for k in keys], "error": str(exc)},
                )

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.lease_renew_every)
            keys = [(jid, tok) for jid, (tok, _t) in self._inflight.items()]
            if not keys:
                continue
            try:
                kept = await self.store.extend_leases(self.cfg.worker_id, keys, self.cfg.lease_seconds)
            except _DB_ERRORS as exc:
                log.warning("automate.lease.extend_failed", extra={"error": str(exc)})
                continue
            lost = {k for k in keys if k not in kept}
            if lost:
                self._lost(lost)
            try:  # runs an operator cancelled (the admin): the executor stops them at their next step
                self.executor.cancelled = await self.store.cancelled_runs([k[0] for k in keys if k not in lost])
            except _DB_ERRORS as exc:
                log.warning("automate.cancel_check.failed", extra={"error": str(exc)})

    async def _reaper_loop(self) -> None:
        interval = max(min(self.cfg.lease_seconds / 2, self.cfg.poll_interval), 0.05)
        while True:
            if not self._enabled():  # the kill switch also stops recovery (it changes jobs)
                await asyncio.sleep(interval)
                continue
            try:
                recovered = await self.store.recover_expired()
            except _DB_ERRORS as exc:
                log.warning("automate.reaper.failed", extra={"error": str(exc)})
                recovered = []
            if recovered:
                log.warning("automate.jobs.recovered", extra={"jobs": [r[0] for r in recovered]})
                self._wake.set()
            await asyncio.sleep(interval)

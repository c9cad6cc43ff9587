"""Running one job: match the event (or load the run), then run each workflow's steps as a DAG.

Steps run as asyncio tasks under the worker's semaphore; a step starts when the steps it depends on are
done, so independent steps run concurrently. Each attempt has a deadline (``step.timeout_seconds``, else
``EXECUTION.timeout_seconds``). Transient failures are retried with backoff and full jitter: a short wait
stays in memory, a long one parks the job in the database. StepRun rows are the durable progress: on a
resumed job, steps that SUCCEEDED or were SKIPPED are not run again.

Containment (DESIGN rule 3): whatever goes wrong inside one job ends in that job. An error of the
workflow's own making (a ``when`` rule, a template, a secret, the step itself, an output that cannot be
stored) is a FAILED step and run with the real, redacted message. An error of the runtime around the job
(the database while planning, a bug) is a counted retry of the job, which dead-letters once its attempts
are used up, with ``last_error`` naming the cause. Nothing escapes ``process`` but cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

from opentelemetry.trace import SpanKind

from automate.connectors.flow import not_taken
from automate.core.backoff import compute_delay
from automate.core.errors import AutomateError
from automate.core.redaction import Redactor
from automate.core.specs import StepSpec
from automate.observability.context import bind_run
from automate.tracing import trace_id_of

from . import metrics, tracing
from .config import WorkerConfig
from .matcher import VersionEntry, WorkflowCache
from .outcomes import error_text
from .recorder import Recorder
from .steps import Park, Prior, RunSecrets, RunState, StepFailed, StepRunner, now
from .store import ClaimedJob, JobStore, RunRow
from .tasks import run_task
from .tracing import parent_context, trace_id_hex

__all__ = ["Executor", "RunCancelled"]

log = logging.getLogger(__name__)


class RunCancelled(Exception):  # control flow: an operator cancelled the run (automate.admin)
    pass

class Executor:
    def __init__(
        self,
        cfg: WorkerConfig,
        store: JobStore,
        recorder: Recorder,
        workflows: WorkflowCache,
        semaphore: asyncio.Semaphore,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.recorder = recorder
        self.workflows = workflows
        self.semaphore = semaphore
        from automate.secrets import get_redactor  # validates SECRETS.redact_patterns, names a bad one

        self.base_redactor = get_redactor()
        self.traced = tracing.tracing_enabled()
        self.steps = StepRunner(cfg, recorder, semaphore, traced=self.traced)
        # Called with the delay of every park, so the worker can wake itself when a job is due again.
        self.on_park: Callable[[float], None] | None = None
        # Runs an operator cancelled, among this worker's in-flight jobs (set by the worker's lease loop):
        # checked before each step, so a cancelled run stops at its next step boundary.
        self.cancelled: set[uuid.UUID] = set()

    # -- a job ---------------------------------------------------------------------------------------
    async def process(self, job: ClaimedJob) -> bool:
        """Run a claimed job to its end (or park it). Returns whether the outcome was written.

        Raises nothing but cancellation (and BaseExceptions that are not errors)."""
        if job.kind == "task":  # a Django task (automate.tasks.AutomateTaskBackend)
            return await run_task(self, job)
        try:
            runs = await self._plan(job)
        except AutomateError as exc:  # the job can never run as it is (its run or version is gone)
            return await self.recorder.finish(job.key, "FAILED", error_text(exc, self.base_redactor))
        except Exception as exc:  # the runtime around the job (database, bug): a counted retry
            return await self._retry_job(job, exc, "planning the job")
        if len(runs) == 1:  # the common case, without gather's bookkeeping
            results: list[Any] = [None]
            try:
                await self._execute(job, runs[0])
            except Exception as exc:
                results = [exc]
        else:
            results = await asyncio.gather(*(self._execute(job, r) for r in runs), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, Exception):
                raise r  # cancellation: the worker releases the job (or it is someone else's now)
        other = [r for r in results if isinstance(r, Exception) and not isinstance(r, Park | StepFailed)]
        if other:
            return await self._retry_job(job, other[0], "running the job")
        parks = [r for r in results if isinstance(r, Park)]
        if parks:  # the earliest: a run that is not due yet when the job comes back parks it again
            first = min(parks, key=lambda p: p.delay)
            if self.on_park is not None:
                self.on_park(first.delay)
            return await self.recorder.park(job.key, first.delay, first.error)
        failed = [str(r) for r in results if isinstance(r, StepFailed)]
        if failed:
            return await self.recorder.finish(job.key, "FAILED", "; ".join(failed)[:4000])
        return await self.recorder.finish(job.key, "COMPLETED", "")

    async def _retry_job(self, job: ClaimedJob, exc: Exception, where: str) -> bool:
        log.error(
            "automate.job.error",
            extra={"job_id": job.id, "attempt": job.attempts, "error": error_text(exc, self.base_redactor)},
        )
        error = error_text(exc, self.base_redactor, prefix=f"{where}: ")
        if job.attempts >= job.max_attempts:
            return await self.recorder.finish(job.key, "FAILED", f"{error} (attempt {job.attempts} of "
                                              f"{job.max_attempts}, no attempts left)")
        delay = compute_delay(None, job.attempts)
        if self.on_park is not None:
            self.on_park(delay)
        return await self.recorder.park(job.key, delay, error, counted=True)

    async def _plan(self, job: ClaimedJob) -> list[RunState]:
        if job.kind == "run":
            return await self._plan_direct_run(job)
        if job.kind != "event" or job.event is None:
            raise AutomateError(f"job {job.id} of kind {job.kind!r} has nothing to run")
        event = job.event
        if job.resumed:
            # Continue exactly the runs this job recorded (the recorder writes all runs of a job
            # together); never match again, so a version published since the event was matched does
            # not start a second, later run for the same event.
            runs = []
            for row in await self.store.runs_for_events([event.id]):
                version = await self.workflows.get(row[2])
                if version is None:
                    raise AutomateError(f"job {job.id}: workflow version {row[2]} of run {row[0]} does not exist")
                runs.append(self._run(job, version, row[0], row[3], row[4], row[5]))
            await self._load_progress(runs)
            return runs
        matched = await self.workflows.match(event.type, {"event": self._event_dict(job)})
        return [self._run(job, version, uuid.uuid4(), "PENDING", "") for version in matched]

    async def _plan_direct_run(self, job: ClaimedJob) -> list[RunState]:
        rows = await self.store.runs_by_id([job.run_id]) if job.run_id else []
        if not rows:
            raise AutomateError(f"job {job.id}: run {job.run_id} does not exist")
        run_id, _event_id, version_id, status, trace_id, error = rows[0]
        version = await self.workflows.get(version_id)
        if version is None:
            raise AutomateError(f"job {job.id}: workflow version {version_id} does not exist")
        run = self._run(job, version, run_id, status, trace_id, error)
        await self._load_progress([run])
        return [run]

    def _run(
        self, job: ClaimedJob, version: VersionEntry, run_id: Any, status: str, trace_id: str, error: str = ""
    ) -> RunState:
        row = RunRow(
            id=run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(str(run_id)),
            version_id=version.id,
            event_id=str(job.event_id),
            job_id=job.id,
            token=job.token,
            status=status,
            trace_id=trace_id,
            error=error or "",
        )
        return RunState(row, version, job)

    async def _load_progress(self, runs: list[RunState]) -> None:
        by_id = {r.row.id: r for r in runs}
        for run_id, step_id, attempt, status, output in await self.store.step_progress(list(by_id)):
            prior = by_id[run_id].prior.setdefault(step_id, Prior())
            prior.attempts = max(prior.attempts, attempt)
            if attempt == prior.attempts:
                prior.status, prior.output = status, output

    @staticmethod
    def _event_dict(job: ClaimedJob) -> dict[str, Any]:
        ev = job.event
        if ev is None:
            return {"id": job.event_id}
        return {"id": ev.id, "type": ev.type, "source": ev.source, "payload": ev.payload}

    # -- a run ---------------------------------------------------------------------------------------
    async def _execute(self, job: ClaimedJob, run: RunState) -> None:
        row = run.row
        if row.status in ("SUCCEEDED", "FAILED", "CANCELLED"):  # a cancelled run ends its job COMPLETED
            return None if row.status != "FAILED" else self._raise_recorded(row)
        version = run.version
        event = job.event
        rid = str(row.id)  # once per run: the context, the logs and each step's StepContext share it
        span_cm: Any = contextlib.nullcontext(None)
        if self.traced:
            # Exceptions are recorded by hand, redacted: OpenTelemetry's own recording would store the
            # raw message and traceback, which can carry a resolved secret.
            span_cm = tracing.tracer.start_as_current_span(
                "automate.run",
                context=parent_context(event.traceparent, event.tracestate) if event else None,
                kind=SpanKind.CONSUMER,
                attributes=tracing.run_attributes(rid, version.slug, version.version_num, job.id),
                record_exception=False,
                set_status_on_exception=False,
            )
        with span_cm as span:
            if span is not None:
                row.trace_id = row.trace_id or trace_id_hex(span)
            elif event is not None:
                row.trace_id = row.trace_id or trace_id_of(event.traceparent)
            row.status, row.started_at = "RUNNING", row.started_at or now()
            self.recorder.run(row)
            ctx: dict[str, Any] = {
                "event": self._event_dict(job),
                "run": {"id": rid, "workflow": version.slug},
                "steps": {},
            }
            redactor = self.base_redactor
            try:
                if version.steps is None:
                    raise StepFailed("*", version.error or "workflow has no steps")
                redactor = await self._run_steps(job, run, ctx)
            except Park:
                raise
            except RunCancelled:
                log.info("automate.run.cancelled", extra={"run_id": str(row.id)})
                return None  # the database says CANCELLED (RECORD_FLUSH keeps it); the job completes
            except StepFailed as exc:
                if row.id in self.cancelled:
                    return None
                self._finish_run(row, "FAILED", ctx, redactor, str(exc))
                tracing.record_failure(span, str(exc))
                raise
            except Exception as exc:  # a bug between steps: the run fails with the reason, never the worker
                error = error_text(exc, redactor, prefix="run failed: ")
                log.error("automate.run.error", extra={"run_id": str(row.id), "error": error})
                self._finish_run(row, "FAILED", ctx, redactor, error)
                tracing.record_failure(span, error)
                raise StepFailed("*", error) from None
            self._finish_run(row, "SUCCEEDED", ctx, redactor, "")
        return None

    @staticmethod
    def _raise_recorded(row: RunRow) -> None:
        """A resumed job whose run had already ended FAILED (or CANCELLED): the job ends with its cause."""
        raise StepFailed("*", f"run {row.id} already {row.status}" + (f": {row.error}" if row.error else ""))

    def _finish_run(self, row: RunRow, status: str, ctx: dict[str, Any], redactor: Redactor, error: str) -> None:
        row.status, row.finished_at = status, now()
        row.error = redactor.redact_str(error) if error else ""
        # Each step's output was redacted once, when its StepRun was recorded; reuse that copy.
        row.outputs = {sid: s.get("stored") for sid, s in ctx["steps"].items()}
        self.recorder.run(row)
        metrics.run_finished(ctx["run"]["workflow"], status)

    async def _run_steps(self, job: ClaimedJob, run: RunState, ctx: dict[str, Any]) -> Redactor:
        assert run.version.steps is not None
        steps = run.version.steps.root
        secrets = RunSecrets(self.base_redactor)
        bind_run(ctx["run"]["id"], run.row.trace_id, secrets)  # log lines of this run: its ids, its secrets redacted
        if len(steps) == 1:
            self._check_cancelled(run)
            await self.steps.run(run, steps[0], ctx, secrets)
            return secrets.redactor
        done: dict[str, asyncio.Future[bool]] = {s.id: asyncio.get_running_loop().create_future() for s in steps}
        problems: list[StepFailed | Park | RunCancelled] = []
        # Steps a condition did not take, and steps all of whose dependencies were skipped that way.
        branch_skipped: set[str] = set()

        async def one(step: StepSpec) -> None:
            ok = False
            try:
                for dep in step.depends_on:
                    if not await asyncio.shield(done[dep]):
                        return  # a dependency failed or is waiting: this step does not run now
                if step.id in branch_skipped or (step.depends_on and branch_skipped.issuperset(step.depends_on)):
                    branch_skipped.add(step.id)
                    self.steps.skip(run, step, ctx)
                else:
                    self._check_cancelled(run)
                    await self.steps.run(run, step, ctx, secrets)
                    if step.type == "condition" and ctx["steps"][step.id]["status"] == "SUCCEEDED":
                        branch_skipped.update(not_taken(step.config, ctx["steps"][step.id]["output"]))
                ok = True
            except (StepFailed, Park, RunCancelled) as exc:
                problems.append(exc)  # independent branches go on; the run ends failed (or parked)
            except Exception as exc:  # a bug: this step fails, the TaskGroup (and the worker) go on
                problems.append(StepFailed(step.id, error_text(exc, secrets.redactor)))
            finally:
                if not done[step.id].done():
                    done[step.id].set_result(ok)

        async with asyncio.TaskGroup() as tg:
            for step in steps:
                tg.create_task(one(step), name=f"step {step.id}")
        if any(isinstance(p, RunCancelled) for p in problems):
            raise RunCancelled
        failures = [p for p in problems if isinstance(p, StepFailed)]
        if failures:
            raise failures[0]
        if problems:
            raise min((p for p in problems if isinstance(p, Park)), key=lambda p: p.delay)
        return secrets.redactor

    def _check_cancelled(self, run: RunState) -> None:
        if run.row.id in self.cancelled:
            raise RunCancelled

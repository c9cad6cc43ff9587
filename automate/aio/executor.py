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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode

from automate.conf import get_settings
from automate.connectors import PermanentStepError, StepContext, classify_failure, get_connector
from automate.core import rules
from automate.core.backoff import compute_delay
from automate.core.errors import AutomateError
from automate.core.redaction import Redactor
from automate.core.specs import StepSpec
from automate.core.templating import referenced_secrets, render
from automate.tracing import trace_id_of

from . import tracing
from .config import WorkerConfig
from .matcher import VersionEntry, WorkflowCache
from .outcomes import check_output, error_text
from .recorder import Recorder
from .store import AuditRow, ClaimedJob, JobStore, RunRow, StepRow
from .tracing import parent_context, trace_id_hex

__all__ = ["Executor"]

log = logging.getLogger(__name__)

_DONE = ("SUCCEEDED", "SKIPPED")
AUDIT_ACTOR = "automate-worker"


def _now() -> datetime:
    return datetime.now(UTC)


class _Park(Exception):  # control flow, not an error
    def __init__(self, delay: float, error: str) -> None:
        self.delay = delay
        self.error = error


class _StepFailed(Exception):
    def __init__(self, step_id: str, error: str) -> None:
        super().__init__(f"step {step_id!r} failed: {error}")
        self.step_id = step_id


@dataclass(slots=True)
class _Prior:
    """What the database already says about one step of a resumed run."""

    attempts: int = 0
    status: str = ""
    output: Any = None


@dataclass(slots=True)
class _Run:
    row: RunRow
    version: VersionEntry
    job: ClaimedJob
    prior: dict[str, _Prior] = field(default_factory=dict)


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
        self.steps_started = 0
        self.traced = tracing.tracing_enabled()
        self._secret_names: dict[tuple[int, str], frozenset[str]] = {}

    # -- a job ---------------------------------------------------------------------------------------
    async def process(self, job: ClaimedJob) -> bool:
        """Run a claimed job to its end (or park it). Returns whether the outcome was written.

        Raises nothing but cancellation (and BaseExceptions that are not errors)."""
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
        other = [r for r in results if isinstance(r, Exception) and not isinstance(r, _Park | _StepFailed)]
        if other:
            return await self._retry_job(job, other[0], "running the job")
        parks = [r for r in results if isinstance(r, _Park)]
        if parks:
            return await self.recorder.park(job.key, max(p.delay for p in parks), parks[0].error)
        failed = [str(r) for r in results if isinstance(r, _StepFailed)]
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
        return await self.recorder.park(job.key, delay, error, counted=True)

    async def _plan(self, job: ClaimedJob) -> list[_Run]:
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
                runs.append(self._run(job, version, row[0], row[3], row[4]))
            await self._load_progress(runs)
            return runs
        matched = await self.workflows.match(event.type, {"event": self._event_dict(job)})
        return [self._run(job, version, uuid.uuid4(), "PENDING", "") for version in matched]

    async def _plan_direct_run(self, job: ClaimedJob) -> list[_Run]:
        rows = await self.store.runs_by_id([job.run_id]) if job.run_id else []
        if not rows:
            raise AutomateError(f"job {job.id}: run {job.run_id} does not exist")
        run_id, _event_id, version_id, status, trace_id = rows[0]
        version = await self.workflows.get(version_id)
        if version is None:
            raise AutomateError(f"job {job.id}: workflow version {version_id} does not exist")
        run = self._run(job, version, run_id, status, trace_id)
        await self._load_progress([run])
        return [run]

    def _run(self, job: ClaimedJob, version: VersionEntry, run_id: Any, status: str, trace_id: str) -> _Run:
        row = RunRow(
            id=run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(str(run_id)),
            version_id=version.id,
            event_id=str(job.event_id),
            job_id=job.id,
            token=job.token,
            status=status,
            trace_id=trace_id,
        )
        return _Run(row, version, job)

    async def _load_progress(self, runs: list[_Run]) -> None:
        by_id = {r.row.id: r for r in runs}
        for run_id, step_id, attempt, status, output in await self.store.step_progress(list(by_id)):
            prior = by_id[run_id].prior.setdefault(step_id, _Prior())
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
    async def _execute(self, job: ClaimedJob, run: _Run) -> None:
        row = run.row
        if row.status in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return None if row.status == "SUCCEEDED" else self._raise_recorded(row)
        version = run.version
        event = job.event
        span_cm: Any = contextlib.nullcontext(None)
        if self.traced:
            # Exceptions are recorded by hand, redacted: OpenTelemetry's own recording would store the
            # raw message and traceback, which can carry a resolved secret.
            span_cm = tracing.tracer.start_as_current_span(
                f"automate.run {version.slug}",
                context=parent_context(event.traceparent, event.tracestate) if event else None,
                kind=SpanKind.CONSUMER,
                attributes={
                    "automate.run_id": str(row.id),
                    "automate.workflow": version.slug,
                    "automate.workflow_version": version.version_num,
                    "automate.job_id": job.id,
                },
                record_exception=False,
                set_status_on_exception=False,
            )
        with span_cm as span:
            if span is not None:
                row.trace_id = row.trace_id or trace_id_hex(span)
            elif event is not None:
                row.trace_id = row.trace_id or trace_id_of(event.traceparent)
            row.status, row.started_at = "RUNNING", row.started_at or _now()
            self.recorder.run(row)
            ctx: dict[str, Any] = {
                "event": self._event_dict(job),
                "run": {"id": str(row.id), "workflow": version.slug},
                "steps": {},
            }
            redactor = self.base_redactor
            try:
                if version.steps is None:
                    raise _StepFailed("*", version.error or "workflow has no steps")
                redactor = await self._run_steps(job, run, ctx)
            except _Park:
                raise
            except _StepFailed as exc:
                self._finish_run(row, "FAILED", ctx, redactor, str(exc))
                tracing.record_failure(span, str(exc))
                raise
            except Exception as exc:  # a bug between steps: the run fails with the reason, never the worker
                error = error_text(exc, redactor, prefix="run failed: ")
                log.error("automate.run.error", extra={"run_id": str(row.id), "error": error})
                self._finish_run(row, "FAILED", ctx, redactor, error)
                tracing.record_failure(span, error)
                raise _StepFailed("*", error) from None
            self._finish_run(row, "SUCCEEDED", ctx, redactor, "")
        return None

    @staticmethod
    def _raise_recorded(row: RunRow) -> None:
        raise _StepFailed("*", f"run {row.id} already {row.status}")

    def _finish_run(self, row: RunRow, status: str, ctx: dict[str, Any], redactor: Redactor, error: str) -> None:
        row.status, row.finished_at = status, _now()
        row.error = redactor.redact_str(error) if error else ""
        # Each step's output was redacted once, when its StepRun was recorded; reuse that copy.
        row.outputs = {sid: s.get("stored") for sid, s in ctx["steps"].items()}
        self.recorder.run(row)

    async def _run_steps(self, job: ClaimedJob, run: _Run, ctx: dict[str, Any]) -> Redactor:
        assert run.version.steps is not None
        steps = run.version.steps.root
        secrets = _RunSecrets(self.base_redactor)
        if len(steps) == 1:
            await self._step(job, run, steps[0], ctx, secrets)
            return secrets.redactor
        done: dict[str, asyncio.Future[bool]] = {s.id: asyncio.get_running_loop().create_future() for s in steps}
        problems: list[_StepFailed | _Park] = []

        async def one(step: StepSpec) -> None:
            ok = False
            try:
                for dep in step.depends_on:
                    if not await asyncio.shield(done[dep]):
                        return  # a dependency failed or is waiting: this step does not run now
                await self._step(job, run, step, ctx, secrets)
                ok = True
            except (_StepFailed, _Park) as exc:
                problems.append(exc)  # independent branches go on; the run ends failed (or parked)
            except Exception as exc:  # a bug: this step fails, the TaskGroup (and the worker) go on
                problems.append(_StepFailed(step.id, error_text(exc, secrets.redactor)))
            finally:
                if not done[step.id].done():
                    done[step.id].set_result(ok)

        async with asyncio.TaskGroup() as tg:
            for step in steps:
                tg.create_task(one(step), name=f"step {step.id}")
        failures = [p for p in problems if isinstance(p, _StepFailed)]
        if failures:
            raise failures[0]
        if problems:
            raise max(problems, key=lambda p: p.delay if isinstance(p, _Park) else 0.0)
        return secrets.redactor

    # -- a step --------------------------------------------------------------------------------------
    async def _step(
        self, job: ClaimedJob, run: _Run, step: StepSpec, ctx: dict[str, Any], secrets: _RunSecrets
    ) -> None:
        prior = run.prior.get(step.id)
        if prior is not None and prior.status in _DONE:
            ctx["steps"][step.id] = {"output": prior.output, "status": prior.status, "stored": prior.output}
            return  # durable progress: never run a completed step again
        attempt = prior.attempts + 1 if prior else 1
        row_id, job_id, token = run.row.id, job.id, job.token
        if step.when is not None:
            try:
                go = rules.evaluate(step.when, ctx)
            except Exception as exc:  # a rule that cannot be evaluated fails its step, with the reason
                error = error_text(exc, secrets.redactor, prefix="when: ")
                now = _now()
                self.recorder.step(StepRow(row_id, step.id, attempt, job_id, token, "FAILED", now, now, None, error))
                raise _StepFailed(step.id, error) from None
            if not go:
                self.recorder.step(StepRow(row_id, step.id, attempt, job_id, token, "SKIPPED", _now(), _now()))
                ctx["steps"][step.id] = {"output": None, "status": "SKIPPED", "stored": None}
                return
        settings = get_settings()
        max_retries = step.max_retries if step.max_retries is not None else self.cfg.max_retries
        timeout = step.timeout_seconds or self.cfg.step_timeout
        while True:
            failure: Exception | None = None
            async with self.semaphore:  # held for the attempt only, never across a retry wait
                started = _now()
                self.steps_started += 1
                self.recorder.step(StepRow(row_id, step.id, attempt, job_id, token, "RUNNING", started))
                try:
                    output = await self._attempt(run, step, ctx, secrets, attempt, timeout, settings)
                    stored = secrets.redactor.redact(output)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failure = exc
            if failure is None:
                self.recorder.step(
                    StepRow(row_id, step.id, attempt, job_id, token, "SUCCEEDED", started, _now(), stored)
                )
                ctx["steps"][step.id] = {"output": output, "status": "SUCCEEDED", "stored": stored}
                return
            transient, asked_delay = classify_failure(failure)
            error = error_text(failure, secrets.redactor)
            retry = transient and attempt <= max_retries
            status = "RETRYING" if retry else "FAILED"
            self.recorder.step(StepRow(row_id, step.id, attempt, job_id, token, status, started, _now(), None, error))
            if not retry:
                raise _StepFailed(step.id, error)
            delay = compute_delay(step.retry, attempt, retry_after=asked_delay)
            log.info(
                "automate.step.retry_scheduled",
                extra={"run_id": str(row_id), "step": step.id, "attempt": attempt, "delay_s": delay},
            )
            if delay > self.cfg.park_after:
                raise _Park(delay, f"step {step.id!r} waiting {delay:.1f}s to retry: {error}")
            await asyncio.sleep(delay)
            attempt += 1

    async def _attempt(
        self,
        run: _Run,
        step: StepSpec,
        ctx: dict[str, Any],
        secrets: _RunSecrets,
        attempt: int,
        limit_s: float,
        settings: Any,
    ) -> Any:
        job = run.job

        def audit(action: str, resource: str, details: dict[str, Any]) -> None:
            row = AuditRow(job.id, job.token, AUDIT_ACTOR, action, resource[:300], secrets.redactor.redact(details))
            self.recorder.audit(row)

        allow = settings.POLICY.connector_allowlist
        if "*" not in allow and step.type not in allow:
            # Checked again at run time: the version may have been saved before the policy changed.
            audit("policy.connector_denied", f"workflow:{run.version.slug}", {
                "run_id": str(run.row.id), "step": step.id, "connector": step.type,
                "policy": "POLICY.connector_allowlist",
            })
            raise PermanentStepError(
                f"connector {step.type!r} is not in DJANGO_AUTOMATE.POLICY.connector_allowlist"
            )
        connector = get_connector(step.type)
        key = (run.version.id, step.id)
        names = self._secret_names.get(key)
        if names is None:  # a version is immutable: walk each step's config once per worker
            names = self._secret_names[key] = frozenset(referenced_secrets(step.config))
        if names:
            for name in await secrets.load(names):  # first use in this run: audited by name only
                audit("secret.used", f"secret:{name}", {"run_id": str(run.row.id), "step": step.id})
        config = render(step.config, ctx, step_id=step.id, resolve_secret=secrets.get)
        step_ctx = StepContext(str(run.row.id), step.id, attempt, run.version.slug, ctx["event"], audit)
        if not self.traced:
            async with asyncio.timeout(limit_s):
                output = await connector.run(config, step_ctx)
            check_output(output, settings.EXECUTION.max_output_bytes)
            return output
        with tracing.tracer.start_as_current_span(
            f"automate.step {step.id}",
            attributes={"automate.step": step.id, "automate.connector": step.type, "automate.attempt": attempt},
            record_exception=False,  # recorded below, redacted: the raw one can carry a secret
            set_status_on_exception=False,
        ) as span:
            try:
                async with asyncio.timeout(limit_s):
                    output = await connector.run(config, step_ctx)
                check_output(output, settings.EXECUTION.max_output_bytes)
            except Exception as exc:
                tracing.record_failure(span, error_text(exc, secrets.redactor), type(exc).__qualname__)
                raise
            span.set_status(Status(StatusCode.OK))
        return output


class _RunSecrets:
    """The secrets resolved in one run, and a redactor that scrubs their values wherever they appear."""

    def __init__(self, base: Redactor) -> None:
        self._values: dict[str, str] = {}
        self.redactor = base

    async def load(self, names: frozenset[str]) -> list[str]:
        """Resolve the names not resolved yet in this run; return those (sorted)."""
        missing = sorted(n for n in names if n not in self._values)
        if not missing:
            return []
        from automate.secrets import aresolve  # the Django side's backends (env, db, custom)

        for name in missing:
            self._values[name] = await aresolve(f"$secret:{name}")
        self.redactor = self.redactor.with_secrets(self._values.values())
        return missing

    def get(self, name: str) -> str:
        return self._values[name]


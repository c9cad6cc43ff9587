"""One step of a run: its ``when``, its attempts (under the semaphore, each with a deadline), retries with
backoff, and durable waits. The executor (``automate.aio.executor``) runs the steps of a run as a DAG
and calls :meth:`StepRunner.run` for each.

Outcomes: a step returns normally (SUCCEEDED or SKIPPED, recorded, its output in ``ctx["steps"]``), or
raises :class:`StepFailed` (recorded FAILED, with the redacted reason) or :class:`Park` (a long retry wait,
or a ``delay`` step: the job is given back until later). Nothing else escapes but cancellation.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry.trace import Status, StatusCode

from automate.conf import get_settings
from automate.connectors import PermanentStepError, StepContext, Wait, classify_failure, get_connector
from automate.core import rules
from automate.core.backoff import compute_delay
from automate.core.redaction import Redactor
from automate.core.specs import StepSpec
from automate.core.templating import copy_constant, is_constant, referenced_secrets, render

from . import metrics, tracing
from .config import WorkerConfig
from .deadlines import deadline
from .matcher import VersionEntry
from .outcomes import check_output, error_text
from .recorder import Recorder
from .store import AuditRow, ClaimedJob, RunRow, StepRow

__all__ = ["AUDIT_ACTOR", "Park", "Prior", "RunSecrets", "RunState", "StepFailed", "StepRunner", "now"]

log = logging.getLogger(__name__)

DONE = ("SUCCEEDED", "SKIPPED")
AUDIT_ACTOR = "automate-worker"


def now() -> datetime:
    return datetime.now(UTC)


class Park(Exception):  # control flow, not an error
    """Give the job back for ``delay`` seconds (a long retry wait, or a durable delay)."""

    def __init__(self, delay: float, error: str) -> None:
        self.delay = delay
        self.error = error


class StepFailed(Exception):
    def __init__(self, step_id: str, error: str) -> None:
        super().__init__(f"step {step_id!r} failed: {error}")
        self.step_id = step_id


@dataclass(slots=True)
class Prior:
    """What the database already says about one step of a resumed run."""

    attempts: int = 0
    status: str = ""
    output: Any = None


@dataclass(slots=True)
class RunState:
    row: RunRow
    version: VersionEntry
    job: ClaimedJob
    prior: dict[str, Prior] = field(default_factory=dict)


class RunSecrets:
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


class StepRunner:
    def __init__(self, cfg: WorkerConfig, recorder: Recorder, semaphore: asyncio.Semaphore, *, traced: bool) -> None:
        self.cfg = cfg
        self.recorder = recorder
        self.semaphore = semaphore
        self.traced = traced
        self.started = 0
        self._secret_names: dict[tuple[int, str], frozenset[str]] = {}
        self._constant: dict[tuple[int, str], bool] = {}

    async def run(self, run: RunState, step: StepSpec, ctx: dict[str, Any], secrets: RunSecrets) -> None:
        prior = run.prior.get(step.id)
        if prior is not None and prior.status in DONE:
            ctx["steps"][step.id] = {"output": prior.output, "status": prior.status, "stored": prior.output}
            return  # durable progress: never run a completed step again
        if prior is not None and prior.status == "WAITING":
            return self._resume_wait(run, step, ctx, prior)
        attempt = prior.attempts + 1 if prior else 1
        job = run.job
        row_id, job_id, token = run.row.id, job.id, job.token
        if step.when is not None:
            try:
                go = rules.evaluate(step.when, ctx)
            except Exception as exc:  # a rule that cannot be evaluated fails its step, with the reason
                error = error_text(exc, secrets.redactor, prefix="when: ")
                at = now()
                self.recorder.step(StepRow(row_id, step.id, attempt, job_id, token, "FAILED", at, at, None, error))
                raise StepFailed(step.id, error) from None
            if not go:
                self.skip(run, step, ctx, attempt)
                return
        settings = get_settings()
        max_retries = step.max_retries if step.max_retries is not None else self.cfg.max_retries
        timeout = step.timeout_seconds or self.cfg.step_timeout
        while True:
            failure: Exception | None = None
            async with self.semaphore:  # held for the attempt only, never across a retry wait
                started = now()
                self.started += 1
                self.recorder.step(StepRow(row_id, step.id, attempt, job_id, token, "RUNNING", started))
                try:
                    output = await self._attempt(run, step, ctx, secrets, attempt, timeout, settings)
                    stored = secrets.redactor.redact(output)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failure = exc
            if failure is None:
                row = StepRow(row_id, step.id, attempt, job_id, token, "SUCCEEDED", started, now(), stored)
                self.recorder.step(row)
                metrics.step_finished(step.type, "SUCCEEDED", started)
                ctx["steps"][step.id] = {"output": output, "status": "SUCCEEDED", "stored": stored}
                return
            if isinstance(failure, Wait):
                raise self._wait(run, step, attempt, started, failure)
            transient, asked_delay = classify_failure(failure)
            error = error_text(failure, secrets.redactor)
            retry = transient and attempt <= max_retries
            status = "RETRYING" if retry else "FAILED"
            self.recorder.step(StepRow(row_id, step.id, attempt, job_id, token, status, started, now(), None, error))
            metrics.step_finished(step.type, status, started)
            if not retry:
                raise StepFailed(step.id, error)
            delay = compute_delay(step.retry, attempt, retry_after=asked_delay)
            log.info(
                "automate.step.retry_scheduled",
                extra={"run_id": str(row_id), "step": step.id, "attempt": attempt, "delay_s": delay},
            )
            tracing.retry_scheduled(step.id, attempt, delay, error)
            if delay > self.cfg.park_after:
                raise Park(delay, f"step {step.id!r} waiting {delay:.1f}s to retry: {error}")
            await asyncio.sleep(delay)
            attempt += 1

    def skip(self, run: RunState, step: StepSpec, ctx: dict[str, Any], attempt: int = 0) -> None:
        """Record ``step`` SKIPPED (its ``when`` was false, or a condition took the other branch)."""
        prior = run.prior.get(step.id)
        if prior is not None and prior.status in DONE:  # skipped (or done) before a resume: as recorded
            ctx["steps"][step.id] = {"output": prior.output, "status": prior.status, "stored": prior.output}
            return
        attempt = attempt or (prior.attempts + 1 if prior else 1)
        at = now()
        self.recorder.step(StepRow(run.row.id, step.id, attempt, run.job.id, run.job.token, "SKIPPED", at, at))
        ctx["steps"][step.id] = {"output": None, "status": "SKIPPED", "stored": None}

    def _wait(self, run: RunState, step: StepSpec, attempt: int, started: datetime, wait: Wait) -> Park:
        """A step that waits: recorded WAITING with the moment it ends; its job is parked until then."""
        output = wait.output if wait.output is not None else {"until": wait.until.isoformat()}
        self.recorder.step(
            StepRow(run.row.id, step.id, attempt, run.job.id, run.job.token, "WAITING", started, None, output)
        )
        delay = max((wait.until - now()).total_seconds(), 0.0)
        metrics.step_finished(step.type, "WAITING", started)
        log.info("automate.step.waiting", extra={"run_id": str(run.row.id), "step": step.id, "delay_s": delay})
        return Park(delay, f"step {step.id!r} waiting until {wait.until.isoformat()}")

    def _resume_wait(self, run: RunState, step: StepSpec, ctx: dict[str, Any], prior: Prior) -> None:
        from automate.connectors.flow import parse_until

        output = prior.output if isinstance(prior.output, dict) else {}
        try:
            until = parse_until(output.get("until"))
        except PermanentStepError as exc:
            raise StepFailed(step.id, f"recorded wait is unreadable: {exc}") from None
        left = (until - now()).total_seconds()
        if left > 0:  # woken early (a poll, another job's NOTIFY): wait on, uncounted
            raise Park(left, f"step {step.id!r} waiting until {until.isoformat()}")
        self.recorder.step(
            StepRow(run.row.id, step.id, prior.attempts, run.job.id, run.job.token, "SUCCEEDED", None, now(), output)
        )
        ctx["steps"][step.id] = {"output": output, "status": "SUCCEEDED", "stored": output}

    async def _attempt(
        self,
        run: RunState,
        step: StepSpec,
        ctx: dict[str, Any],
        secrets: RunSecrets,
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
            raise PermanentStepError(f"connector {step.type!r} is not in DJANGO_AUTOMATE.POLICY.connector_allowlist")
        connector = get_connector(step.type)
        key = (run.version.id, step.id)
        names = self._secret_names.get(key)
        if names is None:  # a version is immutable: walk each step's config once per worker
            names = self._secret_names[key] = frozenset(referenced_secrets(step.config))
        if names:
            for name in await secrets.load(names):  # first use in this run: audited by name only
                audit("secret.used", f"secret:{name}", {"run_id": str(run.row.id), "step": step.id})
        constant = self._constant.get(key)
        if constant is None:  # once per version and step: a config without templates is copied, not rendered
            constant = self._constant[key] = is_constant(step.config)
        if constant:
            config = copy_constant(step.config)
        else:
            config = render(step.config, ctx, step_id=step.id, resolve_secret=secrets.get)
        step_ctx = StepContext(ctx["run"]["id"], step.id, attempt, run.version.slug, ctx["event"], audit, ctx)
        if not self.traced:
            with deadline(limit_s):
                output = await connector.run(config, step_ctx)
            check_output(output, settings.EXECUTION.max_output_bytes)
            return output
        with tracing.tracer.start_as_current_span(
            "automate.step",
            attributes=tracing.step_attributes(run.version.slug, run.version.version_num, step.id, step.type, attempt),
            record_exception=False,  # recorded below, redacted: the raw one can carry a secret
            set_status_on_exception=False,
        ) as span:
            try:
                with deadline(limit_s):
                    output = await connector.run(config, step_ctx)
                check_output(output, settings.EXECUTION.max_output_bytes)
            except Wait:
                span.set_attribute("automate.outcome", "waiting")
                span.set_status(Status(StatusCode.OK))
                raise
            except Exception as exc:
                span.set_attribute("automate.outcome", "error")
                tracing.record_failure(span, error_text(exc, secrets.redactor), type(exc).__qualname__)
                raise
            span.set_attribute("automate.outcome", "succeeded")
            span.set_status(Status(StatusCode.OK))
        return output

"""In-memory implementations of the runtime's seams, for tests and for profiling the executor.

``InMemoryStore`` implements ``automate.aio.store.JobStore`` with the same semantics as ``PgStore``
(claim order, leases, fencing, recovery, parking). The contract tests in ``tests/aio/test_store_contract.py``
run the same assertions against both, so the fake cannot drift from the real store.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from automate.aio.store import ClaimedJob, EventData, FlushBatch, JobKey, VersionRow

__all__ = ["InMemoryStore"]


@dataclass
class _Job:
    id: int
    kind: str
    event_id: str | None
    run_id: str | None = None
    status: str = "PENDING"
    priority: int = 0
    available_at: float = 0.0
    lease_expires_at: float | None = None
    attempts: int = 0
    max_attempts: int = 4
    worker_id: str | None = None
    claim_token: int = 0
    last_error: str = ""
    payload: dict[str, Any] | None = None


@dataclass
class InMemoryStore:
    """A ``JobStore`` in a dict. Not thread-safe; one event loop at a time, like the worker."""

    clock: Any = time.monotonic
    jobs: dict[int, _Job] = field(default_factory=dict)
    events: dict[str, EventData] = field(default_factory=dict)
    versions: dict[int, tuple[VersionRow, bool]] = field(default_factory=dict)  # id -> (row, enabled)
    runs: dict[Any, dict[str, Any]] = field(default_factory=dict)
    steps: dict[tuple[Any, str, int], dict[str, Any]] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)
    _next_job: int = 1

    # -- seeding -------------------------------------------------------------------------------------
    def add_version(self, version_id: int, slug: str, trigger_spec: Any, steps: Any, *, enabled: bool = True) -> None:
        num = 1 + sum(1 for row, _ in self.versions.values() if row.slug == slug)
        self.versions[version_id] = (VersionRow(version_id, slug, num, trigger_spec, steps), enabled)

    def add_event(self, type: str, payload: Any, *, priority: int = 0, max_attempts: int = 4, delay: float = 0) -> int:
        event_id = str(uuid.uuid4())
        self.events[event_id] = EventData(event_id, type, payload, "", "", "")
        job = _Job(self._next_job, "event", event_id, priority=priority, max_attempts=max_attempts)
        job.available_at = self.clock() + delay
        self.jobs[job.id] = job
        self._next_job += 1
        return job.id

    def job(self, job_id: int) -> _Job:
        return self.jobs[job_id]

    # -- JobStore ------------------------------------------------------------------------------------
    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def claim(self, worker_id: str, limit: int, lease_seconds: float) -> list[ClaimedJob]:
        now = self.clock()
        due = [j for j in self.jobs.values() if j.status == "PENDING" and j.available_at <= now]
        due.sort(key=lambda j: (-j.priority, j.id))
        # PgStore returns the claimed jobs sorted by id, whatever the claim order was.
        claimed = []
        for j in due[:limit]:
            j.status, j.worker_id, j.attempts = "CLAIMED", worker_id, j.attempts + 1
            j.claim_token += 1
            j.lease_expires_at = now + lease_seconds
            event = self.events.get(j.event_id) if j.event_id else None
            has_runs = j.kind == "event" and any(r["event_id"] == j.event_id for r in self.runs.values())
            claimed.append(
                ClaimedJob(
                    j.id, j.kind, j.event_id, j.run_id, j.attempts, j.max_attempts, j.payload, event,
                    j.claim_token, has_runs,
                )
            )
        return sorted(claimed, key=lambda c: c.id)

    def _owned(self, keys: Sequence[JobKey]) -> set[JobKey]:
        return {
            (i, tok) for i, tok in keys
            if (j := self.jobs.get(i)) is not None and j.claim_token == tok and j.status == "CLAIMED"
        }

    async def extend_leases(self, worker_id: str, keys: Sequence[JobKey], lease_seconds: float) -> set[JobKey]:
        owned = self._owned(keys)
        for i, _tok in owned:
            self.jobs[i].lease_expires_at = self.clock() + lease_seconds
        return owned

    def _fail_open_runs(self, j: _Job, error: str) -> None:
        for run in self.runs.values():
            mine = run["id"] == _uuid(j.run_id) if j.kind == "run" else run["event_id"] == j.event_id
            if mine and run["status"] in ("PENDING", "RUNNING"):
                run["status"], run["error"] = "FAILED", error

    async def recover_expired(self) -> list[tuple[int, str]]:
        now, out = self.clock(), []
        for j in self.jobs.values():
            if j.status == "CLAIMED" and j.lease_expires_at is not None and j.lease_expires_at < now:
                dead = j.attempts >= j.max_attempts
                j.last_error = f"lease expired on worker {j.worker_id}" + (" (no attempts left)" if dead else "")
                j.status = "FAILED" if dead else "PENDING"
                if dead:
                    self._fail_open_runs(j, j.last_error)
                j.worker_id = j.lease_expires_at = None
                out.append((j.id, j.status))
        return out

    async def release(self, worker_id: str, keys: Sequence[JobKey]) -> None:
        for i, _tok in self._owned(keys):
            j = self.jobs[i]
            j.status, j.worker_id, j.lease_expires_at = "PENDING", None, None
            j.available_at, j.attempts = self.clock(), max(j.attempts - 1, 0)

    async def has_work(self) -> bool:
        return any(j.status in ("PENDING", "CLAIMED") for j in self.jobs.values())

    async def live_versions(self) -> list[VersionRow]:
        latest: dict[str, VersionRow] = {}
        for row, enabled in self.versions.values():
            if enabled and (row.slug not in latest or row.version_num > latest[row.slug].version_num):
                latest[row.slug] = row
        return list(latest.values())

    async def version(self, version_id: int) -> VersionRow | None:
        entry = self.versions.get(version_id)
        return entry[0] if entry else None

    def _run_tuple(self, run: dict[str, Any]) -> tuple[Any, ...]:
        return (run["id"], run["event_id"], run["version_id"], run["status"], run["trace_id"], run["error"])

    async def runs_for_events(self, event_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        wanted = set(event_ids)
        return [self._run_tuple(r) for r in self.runs.values() if r["event_id"] in wanted]

    async def runs_by_id(self, run_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        wanted = {uuid.UUID(str(r)) for r in run_ids}
        return [self._run_tuple(r) for r in self.runs.values() if r["id"] in wanted]

    async def step_progress(self, run_ids: Sequence[Any]) -> list[tuple[Any, ...]]:
        wanted = set(run_ids)
        rows = [
            (s["run_id"], s["step_id"], s["attempt"], s["status"], s["output"])
            for s in self.steps.values()
            if s["run_id"] in wanted
        ]
        return sorted(rows, key=lambda r: (str(r[0]), r[1], r[2]))

    async def cancelled_runs(self, job_ids: Sequence[int]) -> set[Any]:
        out = set()
        for job_id in job_ids:
            j = self.jobs.get(job_id)
            if j is None:
                continue
            for run in self.runs.values():
                mine = run["id"] == _uuid(j.run_id) if j.kind == "run" else run["event_id"] == j.event_id
                if mine and run["status"] == "CANCELLED":
                    out.add(run["id"])
        return out

    async def flush(self, worker_id: str, batch: FlushBatch) -> set[JobKey]:
        owned = self._owned(sorted(batch.job_keys()))
        for r in batch.runs.values():
            if (r.job_id, r.token) in owned:
                existing = self.runs.get(r.id, {})
                if existing.get("status") == "CANCELLED":  # as RECORD_FLUSH: an operator's cancel stays
                    continue
                self.runs[r.id] = {
                    "id": r.id, "version_id": r.version_id, "event_id": r.event_id, "status": r.status,
                    "trace_id": r.trace_id, "outputs": r.outputs, "error": r.error,
                    "started_at": existing.get("started_at") or r.started_at, "finished_at": r.finished_at,
                }
        for s in batch.steps.values():
            if (s.job_id, s.token) in owned:
                self.steps[(s.run_id, s.step_id, s.attempt)] = {
                    "run_id": s.run_id, "step_id": s.step_id, "attempt": s.attempt, "status": s.status,
                    "output": s.output, "error": s.error,
                }
        for key, (status, error) in batch.finished.items():
            if key in owned:
                j = self.jobs[key[0]]
                if status == "FAILED":
                    self._fail_open_runs(j, error)
                j.status, j.last_error, j.lease_expires_at = status, error, None
                if key in batch.results:  # as RECORD_FLUSH: a task's result joins its payload
                    j.payload = {**(j.payload or {}), "result": batch.results[key]}
        for a in batch.audit:
            self.audit.append({"actor": a.actor, "action": a.action, "resource": a.resource, "details": a.details})
        for key, (delay, error, counted) in batch.parked.items():
            if key in owned:
                j = self.jobs[key[0]]
                j.status, j.worker_id, j.lease_expires_at, j.last_error = "PENDING", None, None, error
                j.available_at = self.clock() + delay
                j.attempts = j.attempts if counted else max(j.attempts - 1, 0)
                j.payload = {**(j.payload or {}), "parked": int((j.payload or {}).get("parked", 0)) + 1}
        return owned


def _uuid(value: Any) -> Any:
    return uuid.UUID(str(value)) if value is not None else None

"""The worker's job store: named SQL (automate.queries) over an async psycopg pool.

``JobStore`` is the seam; ``PgStore`` is the real implementation. Every method is one short transaction,
except ``flush``, which writes a whole group commit in one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson
from psycopg import AsyncConnection
from psycopg.rows import tuple_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from automate import queries

__all__ = [
    "AuditRow",
    "ClaimedJob",
    "EventData",
    "FlushBatch",
    "JobKey",
    "JobStore",
    "PgStore",
    "RunRow",
    "StepRow",
    "VersionRow",
]


# EventData and ClaimedJob are built for every claimed job, so they are plain slotted dataclasses: a frozen
# one costs five times as much to build (object.__setattr__ per field). Nothing changes them after the claim.
@dataclass(slots=True)
class EventData:
    id: str
    type: str
    payload: Any
    source: str
    traceparent: str
    tracestate: str


#: A claim of one job: (job id, claim token). Every write about the job is fenced by it.
JobKey = tuple[int, int]


@dataclass(slots=True)
class ClaimedJob:
    id: int
    kind: str
    event_id: str | None
    run_id: str | None
    attempts: int
    max_attempts: int
    payload: dict[str, Any] | None
    event: EventData | None
    token: int = 0  # the claim token (OutboxJob.claim_token after this claim)
    has_runs: bool = False  # an event job that already recorded runs (read by the claim itself)

    @property
    def key(self) -> JobKey:
        return (self.id, self.token)

    @property
    def resumed(self) -> bool:
        """Durable progress exists: the database holds runs of this job (a crash, a lost lease, a
        release at shutdown or a park came before). A fact read by the claim, never a guess from
        ``attempts`` (which a release lowers). A ``run`` job always loads its run's progress."""
        return self.has_runs


@dataclass(frozen=True, slots=True)
class VersionRow:
    id: int
    slug: str
    version_num: int
    trigger_spec: Any
    steps: Any


@dataclass(slots=True)
class RunRow:
    """A run's state as the recorder writes it (upserted by id)."""

    id: uuid.UUID
    version_id: int
    event_id: str
    job_id: int
    token: int
    status: str
    trace_id: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(slots=True)
class StepRow:
    run_id: uuid.UUID
    step_id: str
    attempt: int
    job_id: int
    token: int
    status: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    output: Any = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class AuditRow:
    """An audit entry written by the worker, in the group commit of the job it is about (not fenced: a
    policy decision was taken even if the job's lease is lost meanwhile). ``details`` is redacted."""

    job_id: int
    token: int
    actor: str
    action: str
    resource: str
    details: dict[str, Any]


@dataclass(slots=True)
class FlushBatch:
    """Everything one group commit writes. Rows are keyed so later states replace earlier ones."""

    runs: dict[uuid.UUID, RunRow] = field(default_factory=dict)
    steps: dict[tuple[uuid.UUID, str, int], StepRow] = field(default_factory=dict)
    finished: dict[JobKey, tuple[str, str]] = field(default_factory=dict)  # -> (status, error)
    parked: dict[JobKey, tuple[float, str, bool]] = field(default_factory=dict)  # -> (delay, error, counted)
    audit: list[AuditRow] = field(default_factory=list)
    results: dict[JobKey, Any] = field(default_factory=dict)  # a finished task's result (payload.result)

    def job_keys(self) -> set[JobKey]:
        keys = {(r.job_id, r.token) for r in self.runs.values()} | {(s.job_id, s.token) for s in self.steps.values()}
        return keys | set(self.finished) | set(self.parked) | {(a.job_id, a.token) for a in self.audit}

    def only(self, keys: set[JobKey]) -> FlushBatch:
        """The part of this batch that belongs to ``keys`` (to isolate a row that cannot be written)."""
        return FlushBatch(
            {k: r for k, r in self.runs.items() if (r.job_id, r.token) in keys},
            {k: s for k, s in self.steps.items() if (s.job_id, s.token) in keys},
            {k: v for k, v in self.finished.items() if k in keys},
            {k: v for k, v in self.parked.items() if k in keys},
            [a for a in self.audit if (a.job_id, a.token) in keys],
            {k: v for k, v in self.results.items() if k in keys},
        )

    def __bool__(self) -> bool:
        return bool(self.runs or self.steps or self.finished or self.parked or self.audit)


class JobStore(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def claim(self, worker_id: str, limit: int, lease_seconds: float) -> list[ClaimedJob]: ...
    async def extend_leases(self, worker_id: str, keys: Sequence[JobKey], lease_seconds: float) -> set[JobKey]: ...
    async def recover_expired(self) -> list[tuple[int, str]]: ...
    async def release(self, worker_id: str, keys: Sequence[JobKey]) -> None: ...
    async def has_work(self) -> bool: ...
    async def live_versions(self) -> list[VersionRow]: ...
    async def version(self, version_id: int) -> VersionRow | None: ...
    async def runs_for_events(self, event_ids: Sequence[str]) -> list[tuple[Any, ...]]: ...
    async def runs_by_id(self, run_ids: Sequence[str]) -> list[tuple[Any, ...]]: ...
    async def step_progress(self, run_ids: Sequence[Any]) -> list[tuple[Any, ...]]: ...
    async def cancelled_runs(self, job_ids: Sequence[int]) -> set[uuid.UUID]: ...
    async def flush(self, worker_id: str, batch: FlushBatch) -> set[JobKey]: ...


def _dumps(value: Any) -> str:
    # orjson encodes (slotted) dataclasses, UUIDs and aware datetimes natively, in C.
    return orjson.dumps(value).decode()


async def _configure(conn: AsyncConnection[Any]) -> None:
    set_json_loads(orjson.loads, conn)


def _claimed(rows: list[tuple[Any, ...]]) -> list[ClaimedJob]:
    """Rows of CLAIM_JOBS (or CLAIM_JOBS_FOR) as ClaimedJobs, sorted by id."""
    jobs = []
    for row in rows:
        jid, kind, event_id, run_id, attempts, max_attempts, payload, token = row[:8]
        etype, epayload, src, tp, ts, has_runs = row[8:]
        event = (
            EventData(str(event_id), etype, epayload, src, tp, ts) if event_id is not None else None
        )
        jobs.append(
            ClaimedJob(
                jid,
                kind,
                str(event_id) if event_id else None,
                str(run_id) if run_id else None,
                attempts,
                max_attempts,
                payload,
                event,
                token,
                bool(has_runs),
            )
        )
    jobs.sort(key=lambda j: j.id)
    return jobs


class PgStore:
    """``JobStore`` on PostgreSQL through an ``AsyncConnectionPool`` (autocommit connections)."""

    def __init__(self, conninfo: str, *, pool_size: int = 4) -> None:
        self.conninfo = conninfo
        self.pool_size = pool_size
        self.pool = self._new_pool()
        self._claim_conn: AsyncConnection[Any] | None = None

    def _new_pool(self) -> AsyncConnectionPool[Any]:
        return AsyncConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=self.pool_size,
            open=False,
            kwargs={"autocommit": True, "application_name": "automate-worker"},
            configure=_configure,
            name="automate-worker",
        )

    async def open(self) -> None:
        if self.pool.closed and getattr(self.pool, "_opened", False):
            self.pool = self._new_pool()  # a pool cannot be reopened: a store can
        await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        if self._claim_conn is not None:
            await self._claim_conn.close()
            self._claim_conn = None
        await self.pool.close()

    async def _claimer(self) -> AsyncConnection[Any]:
        """The claim loop's own connection: a claim is on the wake-up path, and a pool checkout and
        return cost about as much as the claim itself. Reopened after any error."""
        if self._claim_conn is None or self._claim_conn.closed:
            self._claim_conn = await AsyncConnection.connect(
                self.conninfo, autocommit=True, application_name="automate-claimer"
            )
            await _configure(self._claim_conn)
        return self._claim_conn

    async def _rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=tuple_row)
            await cur.execute(sql, params)
            return await cur.fetchall() if cur.description else []

    async def claim(self, worker_id: str, limit: int, lease_seconds: float) -> list[ClaimedJob]:
        params = {"worker_id": worker_id, "limit": limit, "lease_seconds": lease_seconds}
        conn = await self._claimer()
        try:
            cur = conn.cursor(row_factory=tuple_row)
            await cur.execute(queries.CLAIM_JOBS, params)
            rows = await cur.fetchall()
        except BaseException:
            await conn.close()  # unknown state (error or cancellation mid-claim): start afresh
            raise
        return _claimed(rows)

    async def claim_for(
        self, worker_id: str, lease_seconds: float, *, event_ids: Sequence[str] = (), job_ids: Sequence[int] = ()
    ) -> list[ClaimedJob]:
        """Claim these PENDING, due jobs only (WORKER_MODE "synchronous": the committing thread runs them)."""
        params = {"worker_id": worker_id, "lease_seconds": lease_seconds, "job_ids": list(job_ids),
                  "event_ids": [uuid.UUID(str(e)) for e in event_ids]}
        return _claimed(await self._rows(queries.CLAIM_JOBS_FOR, params))

    async def extend_leases(self, worker_id: str, keys: Sequence[JobKey], lease_seconds: float) -> set[JobKey]:
        if not keys:
            return set()
        params = {"ids": [k[0] for k in keys], "tokens": [k[1] for k in keys], "lease_seconds": lease_seconds}
        return {(r[0], r[1]) for r in await self._rows(queries.EXTEND_LEASES, params)}

    async def recover_expired(self) -> list[tuple[int, str]]:
        return [(r[0], r[1]) for r in await self._rows(queries.RECOVER_EXPIRED)]

    async def release(self, worker_id: str, keys: Sequence[JobKey]) -> None:
        if keys:
            await self._rows(queries.RELEASE_JOBS, {"ids": [k[0] for k in keys], "tokens": [k[1] for k in keys]})

    async def has_work(self) -> bool:
        return bool((await self._rows(queries.OUTBOX_HAS_WORK))[0][0])

    async def live_versions(self) -> list[VersionRow]:
        return [VersionRow(*r) for r in await self._rows(queries.LIVE_VERSIONS)]

    async def version(self, version_id: int) -> VersionRow | None:
        rows = await self._rows(queries.VERSION_BY_ID, {"id": version_id})
        return VersionRow(*rows[0]) if rows else None

    async def runs_for_events(self, event_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        return await self._rows(queries.RUNS_FOR_EVENTS, {"event_ids": [uuid.UUID(e) for e in event_ids]})

    async def runs_by_id(self, run_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        return await self._rows(queries.RUNS_BY_ID, {"ids": [uuid.UUID(r) for r in run_ids]})

    async def step_progress(self, run_ids: Sequence[Any]) -> list[tuple[Any, ...]]:
        return await self._rows(queries.STEP_PROGRESS, {"run_ids": list(run_ids)})

    async def cancelled_runs(self, job_ids: Sequence[int]) -> set[uuid.UUID]:
        """The runs an operator CANCELLED among these jobs' runs (the worker's lease loop asks)."""
        if not job_ids:
            return set()
        return {r[0] for r in await self._rows(queries.CANCELLED_RUNS_OF_JOBS, {"job_ids": list(job_ids)})}

    async def flush(self, worker_id: str, batch: FlushBatch) -> set[JobKey]:
        """Write one group commit; return the claims (job id, token) that still owned their jobs.

        Rows of jobs whose claim was superseded are not written (the fence: ``queries.RECORD_FLUSH``). All
        statements go out in one pipeline: one round trip and a commit per flush. An error fails the
        whole transaction; the recorder then isolates the bad job (``Recorder._isolate``).
        """
        finished = batch.finished
        held = sorted(k for k in batch.job_keys() if k not in finished)
        runs = list(batch.runs.values())
        steps = list(batch.steps.values())
        results = batch.results
        params: dict[str, Any] = {
            "fin_id": [k[0] for k in finished],
            "fin_token": [k[1] for k in finished],
            "fin_status": [v[0] for v in finished.values()],
            "fin_error": [v[1] for v in finished.values()],
            "fin_result": [_dumps(results[k]) if k in results else None for k in finished],
            "held_id": [k[0] for k in held],
            "held_token": [k[1] for k in held],
            "run_id": [r.id for r in runs],
            "run_version": [r.version_id for r in runs],
            "run_event": [r.event_id for r in runs],
            "run_job": [r.job_id for r in runs],
            "run_token": [r.token for r in runs],
            "run_status": [r.status for r in runs],
            "run_trace": [r.trace_id for r in runs],
            "run_outputs": [_dumps(r.outputs) for r in runs],
            "run_error": [r.error for r in runs],
            "run_started": [r.started_at for r in runs],
            "run_finished": [r.finished_at for r in runs],
            "step_run": [s.run_id for s in steps],
            "step_id": [s.step_id for s in steps],
            "step_attempt": [s.attempt for s in steps],
            "step_job": [s.job_id for s in steps],
            "step_token": [s.token for s in steps],
            "step_status": [s.status for s in steps],
            "step_started": [s.started_at for s in steps],
            "step_finished": [s.finished_at for s in steps],
            "step_output": [None if s.output is None else _dumps(s.output) for s in steps],
            "step_error": [s.error for s in steps],
        }
        async with self.pool.connection() as conn, conn.pipeline(), conn.transaction():
            record = conn.cursor(row_factory=tuple_row)
            await record.execute(queries.RECORD_FLUSH, params, binary=True)
            cur = conn.cursor()
            failed = [(k, v[1]) for k, v in finished.items() if v[0] == "FAILED"]
            if failed:
                await cur.execute(
                    queries.FAIL_OPEN_RUNS,
                    {"id": [k[0] for k, _e in failed], "token": [k[1] for k, _e in failed],
                     "error": [e for _k, e in failed]},
                    binary=True,
                )
            if batch.parked:
                parked = list(batch.parked.items())
                await cur.execute(
                    queries.PARK_JOBS,
                    {
                        "id": [k[0] for k, _ in parked],
                        "token": [k[1] for k, _ in parked],
                        "delay": [float(v[0]) for _, v in parked],
                        "error": [v[1] for _, v in parked],
                        "counted": [v[2] for _, v in parked],
                    },
                    binary=True,
                )
            if batch.audit:
                await cur.execute(queries.INSERT_AUDIT, {"rows": _dumps(batch.audit)})
            owned = {(r[0], r[1]) for r in await record.fetchall()}
        return owned

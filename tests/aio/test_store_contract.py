"""One contract, two stores: PgStore on the real database and the in-memory InMemoryStore."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from automate.aio.store import FlushBatch, PgStore, RunRow, StepRow
from automate.models import OutboxJob
from automate.runtime import emit_event
from automate.testing import InMemoryStore
from automate.workflows import publish

pytestmark = pytest.mark.django_db(transaction=True)

STEPS = [{"id": "t", "type": "transform", "config": {"output": 1}}]


class PgSeed:
    def __init__(self, conninfo: str) -> None:
        self.store = PgStore(conninfo)
        publish("w", trigger_spec={"event": "x"}, steps=STEPS)
        from automate.models import WorkflowVersion

        self.version_id = WorkflowVersion.objects.get().pk

    def add_event(self, priority: int = 0, max_attempts: int = 4) -> int:
        event_id = emit_event("x", {"n": 1})
        OutboxJob.objects.filter(event_id=event_id).update(priority=priority, max_attempts=max_attempts)
        return OutboxJob.objects.get(event_id=event_id).pk

    def job(self, job_id: int) -> tuple:
        j = OutboxJob.objects.get(pk=job_id)
        return (j.status, j.worker_id, j.attempts)


class MemorySeed:
    def __init__(self) -> None:
        self.store = InMemoryStore()
        self.version_id = 1
        self.store.add_version(1, "w", {"event": "x"}, STEPS)

    def add_event(self, priority: int = 0, max_attempts: int = 4) -> int:
        return self.store.add_event("x", {"n": 1}, priority=priority, max_attempts=max_attempts)

    def job(self, job_id: int) -> tuple:
        j = self.store.job(job_id)
        return (j.status, j.worker_id, j.attempts)


@pytest.fixture(params=["pg", "memory"])
def seed(request):
    if request.param == "pg":
        from tests.conftest import conninfo

        return PgSeed(conninfo())
    return MemorySeed()


def run(seed, coro_fn):
    async def main():
        await seed.store.open()
        try:
            return await coro_fn(seed.store)
        finally:
            await seed.store.close()

    return asyncio.run(main())


def test_claim_respects_priority_then_fifo_and_limit(seed):
    low = [seed.add_event() for _ in range(3)]
    high = seed.add_event(priority=5)
    claimed = run(seed, lambda s: s.claim("w1", 2, 30))
    assert [j.id for j in claimed] == sorted([high, low[0]])
    assert all(j.attempts == 1 and j.event is not None and j.event.type == "x" for j in claimed)
    assert seed.job(high) == ("CLAIMED", "w1", 1)
    assert seed.job(low[1]) == ("PENDING", None, 0)


def test_claimed_jobs_are_not_claimed_again(seed):
    ids = [seed.add_event() for _ in range(3)]

    async def both(s):
        first = await s.claim("w1", 10, 30)
        second = await s.claim("w2", 10, 30)
        return first, second

    first, second = run(seed, both)
    assert sorted(j.id for j in first) == ids and second == []


def test_extend_leases_is_fenced(seed):
    job = seed.add_event()

    async def go(s):
        [claim] = await s.claim("w1", 1, 30)
        stale = (job, claim.token - 1)  # an earlier claim of the same job
        return claim, await s.extend_leases("w1", [claim.key], 30), await s.extend_leases("w1", [stale], 30)

    claim, mine, stale = run(seed, go)
    assert claim.id == job and mine == {claim.key} and stale == set()


def test_every_claim_gets_a_new_token_and_the_old_one_is_fenced(seed):
    """A worker that lost a lease and claims the same job again holds a new token; the old one writes nothing."""
    job = seed.add_event()

    async def go(s):
        [first] = await s.claim("w1", 1, 0.01)
        await asyncio.sleep(0.05)
        await s.recover_expired()
        [second] = await s.claim("w1", 1, 30)  # the same worker wins it back
        stale = FlushBatch()
        stale.finished[first.key] = ("FAILED", "stale")
        owned = await s.flush("w1", stale)
        kept = await s.extend_leases("w1", [first.key, second.key], 30)
        return first, second, owned, kept

    first, second, owned, kept = run(seed, go)
    assert second.token > first.token and second.id == first.id == job
    assert owned == set() and kept == {second.key}
    assert seed.job(job) == ("CLAIMED", "w1", 2)


def test_expired_leases_are_recovered_or_dead_lettered(seed):
    retry = seed.add_event(max_attempts=3)
    dead = seed.add_event(max_attempts=1)

    async def go(s):
        await s.claim("w1", 10, 0.01)
        await asyncio.sleep(0.05)
        return dict(await s.recover_expired())

    assert run(seed, go) == {retry: "PENDING", dead: "FAILED"}
    assert seed.job(retry) == ("PENDING", None, 1)


def test_release_gives_jobs_back_uncounted(seed):
    job = seed.add_event()

    async def claim_then_stale_release(s):
        [claim] = await s.claim("w1", 1, 30)
        await s.release("w1", [(job, claim.token + 1)])  # not this claim's token: nothing happens
        return claim

    claim = run(seed, claim_then_stale_release)
    assert seed.job(job) == ("CLAIMED", "w1", 1)
    run(seed, lambda s: s.release("w1", [claim.key]))
    assert seed.job(job) == ("PENDING", None, 0)


def _batch(job, version_id, status="COMPLETED"):
    batch = FlushBatch()
    run_id = uuid.uuid4()
    now = datetime.now(UTC)
    batch.runs[run_id] = RunRow(
        run_id, version_id, job.event_id, job.id, job.token, "SUCCEEDED", "", {"t": 1}, "", now, now
    )
    batch.steps[(run_id, "t", 1)] = StepRow(run_id, "t", 1, job.id, job.token, "SUCCEEDED", now, now, 1, "")
    batch.finished[job.key] = (status, "")
    return batch, run_id


def test_flush_writes_owned_jobs_and_fences_the_rest(seed):
    mine_id, theirs_id = seed.add_event(), seed.add_event()

    async def go(s):
        mine = (await s.claim("w1", 1, 30))[0]
        theirs = (await s.claim("w2", 1, 30))[0]
        b1, r1 = _batch(mine, seed.version_id)
        b2, r2 = _batch(theirs, seed.version_id, "FAILED")
        for r in b2.runs.values():
            r.token = 0  # not the token w2's claim holds: these rows are someone else's to write
        for st in b2.steps.values():
            st.token = 0
        b2.finished = {(theirs.id, 0): ("FAILED", "")}
        b1.runs.update(b2.runs)
        b1.steps.update(b2.steps)
        b1.finished.update(b2.finished)
        owned = await s.flush("w1", b1)
        progress = await s.step_progress([r1, r2])
        runs = await s.runs_for_events([mine.event_id, theirs.event_id])
        return owned, progress, runs, r1

    owned, progress, runs, r1 = run(seed, go)
    assert {k[0] for k in owned} == {mine_id}
    assert [(p[0], p[1], p[2], p[3]) for p in progress] == [(r1, "t", 1, "SUCCEEDED")]
    assert [r[0] for r in runs] == [r1]
    assert seed.job(mine_id)[0] == "COMPLETED"
    assert seed.job(theirs_id) == ("CLAIMED", "w2", 1)


def test_parked_jobs_come_back_later_uncounted(seed):
    job_id = seed.add_event()

    async def go(s):
        job = (await s.claim("w1", 1, 30))[0]
        batch = FlushBatch()
        batch.parked[job.key] = (0.2, "waiting", False)
        await s.flush("w1", batch)
        early = await s.claim("w1", 1, 30)
        await asyncio.sleep(0.3)
        late = await s.claim("w1", 1, 30)
        return early, late

    early, late = run(seed, go)
    assert early == [] and [j.id for j in late] == [job_id]
    assert late[0].attempts == 1 and late[0].payload == {"parked": 1}
    assert not late[0].resumed  # it recorded no runs: nothing to resume


def test_counted_retries_use_up_attempts(seed):
    job_id = seed.add_event()

    async def go(s):
        job = (await s.claim("w1", 1, 30))[0]
        batch = FlushBatch()
        batch.parked[job.key] = (0.0, "planning the job: OperationalError: gone", True)
        await s.flush("w1", batch)
        return await s.claim("w1", 1, 30)

    [again] = run(seed, go)
    assert again.id == job_id and again.attempts == 2


def test_a_job_with_recorded_runs_is_resumed_whatever_its_attempts(seed):
    """Whether progress exists is read from the runs, not from ``attempts`` (which a release lowers)."""
    job_id = seed.add_event()

    async def go(s):
        job = (await s.claim("w1", 1, 30))[0]
        batch, _run_id = _batch(job, seed.version_id)
        batch.finished.clear()
        await s.flush("w1", batch)
        await s.release("w1", [job.key])
        return job, await s.claim("w2", 1, 30)

    first, [again] = run(seed, go)
    assert not first.resumed
    assert again.id == job_id and again.attempts == 1 and again.resumed


def test_a_dead_lettered_job_fails_its_open_runs(seed):
    job_id = seed.add_event(max_attempts=1)

    async def go(s):
        job = (await s.claim("w1", 1, 0.01))[0]
        batch, run_id = _batch(job, seed.version_id)
        batch.finished.clear()
        for r in batch.runs.values():
            r.status, r.finished_at = "RUNNING", None
        await s.flush("w1", batch)
        await asyncio.sleep(0.05)
        recovered = await s.recover_expired()
        return recovered, await s.runs_by_id([str(run_id)])

    recovered, [run_row] = run(seed, go)
    assert recovered == [(job_id, "FAILED")]
    assert run_row[3] == "FAILED" and "lease expired" in run_row[5]  # the run says why, as the job does


def test_finishing_a_job_failed_fails_its_open_runs_but_keeps_ended_ones(seed):
    job_id = seed.add_event()

    async def go(s):
        job = (await s.claim("w1", 1, 30))[0]
        batch, run_id = _batch(job, seed.version_id, "FAILED")
        for r in batch.runs.values():
            r.status, r.finished_at = "RUNNING", None
        await s.flush("w1", batch)
        return await s.runs_by_id([str(run_id)])

    [run_row] = run(seed, go)
    assert run_row[3] == "FAILED"
    assert seed.job(job_id)[0] == "FAILED"


def test_live_versions_are_the_latest_enabled(seed):
    rows = run(seed, lambda s: s.live_versions())
    assert [(r.slug, r.version_num) for r in rows] == [("w", 1)]

"""What bench_peers.py's systems share: the parameters, the ``System`` interface, worker processes.

Kept apart from ``bench_peers.py`` so the systems in other modules (``peers_automate.py``) and the
harness use the same classes (a script imported under its own name is a second module: its
``NotMeasured`` would not be the one the harness catches).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

TESTS = ("drain", "io", "latency")
TASK_NAME = "bench_job"


@dataclass
class Params:
    jobs: int
    io_jobs: int
    io_sleep: float
    io_concurrency: int
    drain_concurrency: int
    batch_size: int
    latency_jobs: int
    latency_interval: float
    uvloop: bool
    workdir: Path

    @property
    def latency_concurrency(self) -> int:
        # The drain's concurrency: with --batch-size 100 it is the one every system accepts (pgqueuer
        # wants max_concurrent_tasks >= 2 x batch); an idle worker's wake-up does not depend on it.
        return self.drain_concurrency


Enqueue = Callable[[int], Awaitable[float | None]]


@dataclass
class DrainOutcome:
    jobs: int
    seconds: float
    method: str
    detail: dict[str, Any] = field(default_factory=dict)


class NotMeasured(Exception):
    """A system cannot run this test yet; the message says why. Reported, never faked."""


class System:
    """One job system under test. Override the async methods; the harness does the rest."""

    name: ClassVar[str]
    label: ClassVar[str]
    notes: ClassVar[str] = ""
    #: The tests this system takes part in (the others are left out, not failed).
    tests: ClassVar[tuple[str, ...]] = TESTS

    def batch_for(self, p: Params, concurrency: int) -> int:
        """The claim batch this system runs with at ``concurrency``: ``--batch-size`` unless it refuses it."""
        return p.batch_size

    def settings(self, p: Params) -> str:
        """The settings it runs with, named in the report."""
        return self.notes

    async def setup(self, db: str) -> None:
        """Create the system's schema in the fresh database ``db``, the way its documentation says."""
        raise NotImplementedError

    async def enqueue_many(self, db: str, n: int, task: str) -> None:
        """Enqueue jobs with payloads 1..n; ``task`` is noop or sleep (most systems leave it to the worker)."""
        raise NotImplementedError

    async def remaining(self, db: str) -> int:
        """Jobs not yet completed (checked after a drain: must be 0)."""
        raise NotImplementedError

    async def run_until_drained(self, db: str, task: str, concurrency: int, p: Params) -> DrainOutcome:
        """Start one worker process on the enqueued jobs; return when it has exited with the queue empty."""
        raise NotImplementedError

    def probe(self, db: str) -> contextlib.AbstractAsyncContextManager[Enqueue]:
        """An enqueuer for the latency test: ``await enqueue(i)`` returns once job i is committed.

        It may return the commit time itself (when it does more after the commit); else the moment it
        returned is taken as the commit time.
        """
        raise NotImplementedError

    async def run_latency(self, db: str, p: Params) -> dict[int, tuple[float, float]]:
        """{i: (commit time, start time)} for jobs 1..latency_jobs enqueued to an idle worker."""
        raise NotImplementedError


# --- processes -----------------------------------------------------------------------------------


async def run_process(cmd: list[str], *, env: dict[str, str] | None = None, within: float) -> None:
    proc = await asyncio.create_subprocess_exec(*cmd, env=env)
    try:
        await asyncio.wait_for(proc.wait(), timeout=within)
    finally:
        await stop_process(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} ... exited with {proc.returncode}: {' '.join(cmd[1:6])} ...")


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    """Terminate a worker we started if it is still running (SIGTERM, then SIGKILL)."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout=10)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


# --- the latency test's enqueuer -----------------------------------------------------------------


async def paced_enqueues(enqueue: Enqueue, n: int, interval: float, commits: dict[int, float]) -> None:
    """Enqueue probes 1..n, ``interval`` seconds apart on the loop's clock; record each commit time."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(1, n + 1):
        delay = t0 + (i - 1) * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        commits[i] = await timed_enqueue(enqueue, i)


async def timed_enqueue(enqueue: Enqueue, i: int) -> float:
    """Run ``enqueue(i)``; its commit time is what it returns, else the moment it returned."""
    commit = await enqueue(i)
    return commit if commit is not None else time.time()

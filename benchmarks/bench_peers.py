"""Worker comparison: procrastinate, pgqueuer, automate and a raw SKIP LOCKED loop, in one run on one server.

    python benchmarks/bench_peers.py [--quick] [--jobs 20000] [--systems raw,procrastinate,pgqueuer]

Every system runs the tests it takes part in, each in its own fresh database on the same PostgreSQL,
with its worker in its own process (``peers_workers.py --worker NAME``, or ``automate-aio-worker``):

* ``drain``: N no-op jobs are enqueued, then one worker process drains them at concurrency 200 and
  batch 100. jobs/s over the window from the first job's start to the worker's exit after the last
  completion was written.
* ``io``: 5,000 jobs of ``asyncio.sleep(0.05)`` at concurrency 100: runs/s, and % of the ideal
  100 / 0.05 s = 2,000 runs/s (same window).
* ``latency``: an idle worker (listening, as each library does by default), 200 jobs enqueued 20 ms
  apart; latency from the moment the enqueue commit returned to the moment the job function started,
  both read from the same machine clock (p50, p99).

The baseline is ``raw``: a hand-written asyncio + psycopg loop on automate's own outbox tables (events and
jobs written as ``emit_event`` writes them) that claims a batch with ``UPDATE ... WHERE id =
ANY(ARRAY(SELECT id ... FOR UPDATE SKIP LOCKED LIMIT n)) RETURNING`` and completes finished jobs in one
statement per batch. It does nothing a queue library does besides that (no retries,
no leases, no events, no heartbeats), so it is the ceiling; the others are reported as ratios to it.

A system plugs in by subclassing ``peers_base.System`` (``setup``, ``enqueue_many``,
``run_until_drained``, ``probe``) and adding itself in ``registered_systems()``. The automate systems
(``peers_automate.py``: workflow runs, the same on uvloop, bare Django tasks sync and async) are
registered only when ``automate.aio.cli`` can be imported.

Writes ``benchmarks/results/peers.json`` and the chart ``benchmarks/results/peers.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import _common as common
import peers_workers as pw
import psycopg
from peers_automate import automate_systems
from peers_base import (
    TASK_NAME,
    TESTS,
    DrainOutcome,
    Enqueue,
    NotMeasured,
    Params,
    System,
    paced_enqueues,
    run_process,
    stop_process,
)

# =================================================================================================
# The systems (the worker side of the script-run ones is in peers_workers.py, automate's in peers_automate.py)
# =================================================================================================


class ScriptWorkerSystem(System):
    """A system whose worker is ``peers_workers.py --worker <name>`` (timestamps from the job)."""

    def _worker_cmd(self, db: str, *, mode: str, task: str, concurrency: int, p: Params, out: Path,
                    expect: int | None = None) -> list[str]:
        cmd = [sys.executable, pw.__file__, "--worker", self.name, "--db", db,
               "--mode", mode, "--task", task, "--concurrency", str(concurrency),
               "--batch-size", str(self.batch_for(p, concurrency)), "--sleep", str(p.io_sleep), "--out", str(out)]
        if expect is not None:
            cmd += ["--expect", str(expect)]
        if p.uvloop:
            cmd.append("--uvloop")
        return cmd

    async def run_until_drained(self, db: str, task: str, concurrency: int, p: Params) -> DrainOutcome:
        out = p.workdir / f"{self.name}-{task}.json"
        cmd = self._worker_cmd(db, mode="drain", task=task, concurrency=concurrency, p=p, out=out)
        await run_process(cmd, within=max(300.0, p.jobs / 20))
        data = json.loads(out.read_text())
        if not data["first_start"]:
            raise RuntimeError(f"{self.name}: the worker ran no job")
        seconds = data["end"] - data["first_start"]
        return DrainOutcome(
            jobs=data["tasks"],
            seconds=seconds,
            method="first job start -> worker exit (queue empty, completions written), worker's clock",
            detail={
                "tail_after_last_job_s": round(data["end"] - data["last_task_end"], 4),
                "worker_cpu_s": round(data["worker_cpu_s"], 3) if data["worker_cpu_s"] is not None else None,
            },
        )

    async def run_latency(self, db: str, p: Params) -> dict[int, tuple[float, float]]:
        out = p.workdir / f"{self.name}-latency.json"
        ready = Path(str(out) + pw.READY_SUFFIX)
        n = p.latency_jobs
        cmd = self._worker_cmd(db, mode="idle", task="probe", concurrency=p.latency_concurrency, p=p, out=out,
                               expect=n + 1)
        commits: dict[int, float] = {}
        proc = await asyncio.create_subprocess_exec(*cmd)
        try:
            async with self.probe(db) as enqueue:
                await enqueue(0)  # warm-up: once it has started, the worker is up and listening
                deadline = time.monotonic() + 120
                while not await asyncio.to_thread(ready.exists):
                    if proc.returncode is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{self.name}: the worker never started the warm-up job")
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.5)  # idle again
                await paced_enqueues(enqueue, n, p.latency_interval, commits)
            await asyncio.wait_for(proc.wait(), timeout=60)
        finally:
            await stop_process(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name}: the latency worker exited with {proc.returncode}")
        starts = {int(k): v for k, v in json.loads(out.read_text())["starts"].items()}
        return {i: (commits[i], starts[i]) for i in commits if i in starts}


class RawSystem(ScriptWorkerSystem):
    name = "raw"
    label = "raw SKIP LOCKED loop"
    notes = ("asyncio + psycopg on automate's outbox; claims min(batch, free slots) with UPDATE ... "
             "ANY(ARRAY(SELECT ... SKIP LOCKED)); completes finished jobs in one UPDATE per batch")

    def settings(self, p: Params) -> str:
        return (f"this script's loop on automate's outbox tables (asyncio + psycopg): claims min({p.batch_size}, "
                "free slots) per UPDATE ... SKIP LOCKED, completes in batches, LISTEN automate_outbox; "
                "no runs, retries, leases or heartbeats")

    async def setup(self, db: str) -> None:
        await asyncio.to_thread(common.migrate_automate, db)

    async def enqueue_many(self, db: str, n: int, task: str) -> None:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            await conn.execute(pw.RAW_ENQUEUE_MANY, {"first": 1, "last": n})

    async def remaining(self, db: str) -> int:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            row = await (await conn.execute(pw.RAW_REMAINING)).fetchone()
        return int(row[0]) if row else -1

    @contextlib.asynccontextmanager
    async def probe(self, db: str) -> AsyncIterator[Enqueue]:
        conn = await psycopg.AsyncConnection.connect(db, autocommit=True, cursor_factory=psycopg.AsyncClientCursor)
        try:

            async def enqueue(i: int) -> None:
                await conn.execute(pw.RAW_ENQUEUE_ONE, {"i": i})

            yield enqueue
        finally:
            await conn.close()


class ProcrastinateSystem(ScriptWorkerSystem):
    name = "procrastinate"
    label = "procrastinate"
    notes = "PsycopgConnector (async), default pool; one job fetched per query; run_worker_async(concurrency=N)"

    def settings(self, p: Params) -> str:
        return ("procrastinate defaults: PsycopgConnector (async, psycopg_pool's default size), "
                "run_worker_async(concurrency=N), listen_notify on; no batch option (one job per fetch)")

    async def setup(self, db: str) -> None:
        app = pw.procrastinate_app(db)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    async def enqueue_many(self, db: str, n: int, task: str) -> None:
        app = pw.procrastinate_app(db)
        async with app.open_async():
            deferrer = app.configure_task(TASK_NAME)
            for first in range(1, n + 1, 1000):
                await deferrer.batch_defer_async(*({"i": i} for i in range(first, min(n, first + 999) + 1)))

    async def remaining(self, db: str) -> int:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            cur = await conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')")
            row = await cur.fetchone()
        return int(row[0]) if row else -1

    @contextlib.asynccontextmanager
    async def probe(self, db: str) -> AsyncIterator[Enqueue]:
        app = pw.procrastinate_app(db)
        async with app.open_async():
            deferrer = app.configure_task(TASK_NAME)

            async def enqueue(i: int) -> None:
                await deferrer.defer_async(i=i)

            yield enqueue


class PgqueuerSystem(ScriptWorkerSystem):
    """pgqueuer with asyncpg, its primary driver (the set-up and the enqueuer use psycopg: same SQL)."""

    name = "pgqueuer"
    label = "pgqueuer (asyncpg)"
    notes = "AsyncpgDriver (one connection); batch_size=--batch-size; max_concurrent_tasks=N"

    def batch_for(self, p: Params, concurrency: int) -> int:
        # pgqueuer refuses max_concurrent_tasks < 2 x batch_size; only a test whose concurrency is below
        # twice the batch (io at 100 with batch 100) runs it with the largest batch it accepts.
        return max(1, min(p.batch_size, concurrency // 2))

    def settings(self, p: Params) -> str:
        io = self.batch_for(p, p.io_concurrency)
        lowered = (f" (io test: {io}, the most it accepts at concurrency {p.io_concurrency})"
                   if io < p.batch_size else "")
        return (f"QueueManager on AsyncpgDriver (one connection), run(batch_size={p.batch_size}{lowered}, "
                "max_concurrent_tasks=N)")

    @contextlib.asynccontextmanager
    async def _queries(self, db: str) -> AsyncIterator[Any]:
        from pgqueuer import Queries

        conn = await psycopg.AsyncConnection.connect(db, autocommit=True)
        try:
            yield Queries.from_psycopg_connection(conn)
        finally:
            await conn.close()

    async def setup(self, db: str) -> None:
        async with self._queries(db) as q:
            await q.install()  # what `pgq install` runs

    async def enqueue_many(self, db: str, n: int, task: str) -> None:
        async with self._queries(db) as q:
            for first in range(1, n + 1, 1000):
                ids = range(first, min(n, first + 999) + 1)
                await q.enqueue([TASK_NAME] * len(ids), [str(i).encode() for i in ids], [0] * len(ids))

    async def remaining(self, db: str) -> int:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            row = await (await conn.execute("SELECT count(*) FROM pgqueuer")).fetchone()
        return int(row[0]) if row else -1

    @contextlib.asynccontextmanager
    async def probe(self, db: str) -> AsyncIterator[Enqueue]:
        async with self._queries(db) as q:

            async def enqueue(i: int) -> None:
                await q.enqueue(TASK_NAME, str(i).encode())

            yield enqueue


class PgqueuerPsycopgSystem(PgqueuerSystem):
    """pgqueuer's documented psycopg set-up: one autocommit AsyncConnection behind PsycopgDriver.

    That driver waits for notifications with ``notifies(timeout=1.0)`` while holding the connection, so
    a query issued meanwhile (a dequeue once a slot frees) can wait up to a second unless a NOTIFY comes.
    """

    name = "pgqueuer-psycopg"
    label = "pgqueuer (psycopg)"
    notes = "PsycopgDriver (one autocommit connection shared by queries and LISTEN)"

    def settings(self, p: Params) -> str:
        return "the same on PsycopgDriver (one autocommit connection shared by queries and LISTEN)"


def registered_systems(io_sleep: float) -> tuple[list[System], dict[str, str], set[str]]:
    """(systems that can run, {name: why not} for those that cannot, names left out unless asked for)."""
    systems: list[System] = [RawSystem(), ProcrastinateSystem()]
    unavailable: dict[str, str] = {}
    optional: set[str] = set()
    if importlib.util.find_spec("asyncpg") is not None:
        systems.append(PgqueuerSystem())
        # Its io test takes minutes (see PgqueuerPsycopgSystem): run it with --systems pgqueuer-psycopg.
        optional.add(PgqueuerPsycopgSystem.name)
    else:
        unavailable["pgqueuer"] = "not available (asyncpg, pgqueuer's primary driver, is not installed)"
    systems.append(PgqueuerPsycopgSystem())
    ours, missing = automate_systems(io_sleep)
    return systems + ours, {**unavailable, **missing}, optional


# =================================================================================================
# Harness side: processes and tests
# =================================================================================================


async def commit_probe(admin: str) -> dict[str, float]:
    name = "bench_peers_commit_probe"
    url = await asyncio.to_thread(common.fresh_database, admin, name)
    try:
        return await asyncio.to_thread(common.commit_latency_ms, url)
    finally:
        await asyncio.to_thread(common.drop_database, admin, name)


async def fresh_db(admin: str, system: System, test: str) -> tuple[str, str]:
    name = f"bench_peers_{system.name}_{test}"
    url = await asyncio.to_thread(common.fresh_database, admin, name)
    await system.setup(url)
    return name, url


async def test_drain(system: System, admin: str, p: Params, *, io: bool) -> dict[str, Any]:
    n = p.io_jobs if io else p.jobs
    task = "sleep" if io else "noop"
    concurrency = p.io_concurrency if io else p.drain_concurrency
    name, db = await fresh_db(admin, system, "io" if io else "drain")
    try:
        t = time.perf_counter()
        await system.enqueue_many(db, n, task)
        enqueue_s = time.perf_counter() - t
        outcome = await system.run_until_drained(db, task, concurrency, p)
        left = await system.remaining(db)
    finally:
        await asyncio.to_thread(common.drop_database, admin, name)
    if left != 0 or outcome.jobs != n:
        raise RuntimeError(f"{system.name}: {outcome.jobs} of {n} jobs ran and {left} remain after the drain")
    rate = n / outcome.seconds
    result: dict[str, Any] = {
        "jobs": n,
        "concurrency": concurrency,
        "batch_size": system.batch_for(p, concurrency),
        "seconds": round(outcome.seconds, 4),
        "jobs_per_s": round(rate, 1),
        "enqueue_s": round(enqueue_s, 3),
        "method": outcome.method,
        **outcome.detail,
    }
    if io:
        ideal = concurrency / p.io_sleep
        result.update(sleep_s=p.io_sleep, ideal_per_s=ideal, pct_of_ideal=round(100 * rate / ideal, 1))
    return result


async def test_latency(system: System, admin: str, p: Params) -> dict[str, Any]:
    name, db = await fresh_db(admin, system, "latency")
    try:
        pairs = await system.run_latency(db, p)
    finally:
        await asyncio.to_thread(common.drop_database, admin, name)
    lat = [start - commit for commit, start in pairs.values()]
    return {
        "jobs": p.latency_jobs,
        "interval_s": p.latency_interval,
        "concurrency": p.latency_concurrency,
        "batch_size": system.batch_for(p, p.latency_concurrency),
        "observed": len(lat),
        "missing": p.latency_jobs - len(lat),
        **common.latency_summary(lat),
    }


# =================================================================================================
# Report
# =================================================================================================


def _get(results: dict[str, Any], system: str, test: str, key: str) -> float | None:
    value = results.get(system, {}).get(test, {})
    return value.get(key) if isinstance(value, dict) else None


def report(results: dict[str, Any], names: list[str], unavailable: dict[str, str], p: Params) -> list[list[Any]]:
    rows = []
    for s in names:
        drain = _get(results, s, "drain", "jobs_per_s")
        io = _get(results, s, "io", "jobs_per_s")
        rows.append([
            s,
            drain,
            common.ratio(drain, _get(results, "raw", "drain", "jobs_per_s")),
            io,
            _get(results, s, "io", "pct_of_ideal"),
            common.ratio(io, _get(results, "raw", "io", "jobs_per_s")),
            _get(results, s, "latency", "p50_ms"),
            _get(results, s, "latency", "p99_ms"),
        ])
    for s, why in unavailable.items():
        rows.append([f"{s}: {why.split(' (')[0]}", None, None, None, None, None, None, None])
    common.print_table(
        ["system", "drain jobs/s", "x raw", "io runs/s", "% ideal", "x raw", "p50 ms", "p99 ms"],
        rows,
        title=(f"workers: drain {p.jobs:,} no-op jobs (concurrency {p.drain_concurrency}), "
               f"io {p.io_jobs:,} x sleep({p.io_sleep:g}) at concurrency {p.io_concurrency} "
               f"(ideal {p.io_concurrency / p.io_sleep:,.0f}/s), wake latency {p.latency_jobs} jobs "
               f"{p.latency_interval * 1000:g} ms apart"),
    )
    for s in names:
        for test in TESTS:
            value = results.get(s, {}).get(test)
            if isinstance(value, str):
                print(f"  {s} {test}: {value}")
    return rows


def chart(results: dict[str, Any], names: list[str], p: Params, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6))
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
    colors = {s: palette[i % len(palette)] for i, s in enumerate(names)}

    def ran(test: str) -> list[str]:
        return [s for s in names if test in results.get(s, {})]

    def bars(ax: Any, test: str, key: str, title: str, ylabel: str) -> None:
        shown = ran(test)
        values = [_get(results, s, test, key) for s in shown]
        xs = range(len(shown))
        heights = [v or 0 for v in values]
        ax.bar(xs, heights, color=[colors[s] for s in shown])
        ax.set_xticks(list(xs), shown, rotation=20, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        for x, v in zip(xs, values, strict=True):
            ax.annotate("n/a" if v is None else f"{v:,.0f}" if v >= 10 else f"{v:.1f}", (x, v or 0),
                        ha="center", va="bottom", fontsize=8)

    bars(axes[0], "drain", "jobs_per_s", f"drain {p.jobs:,} no-op jobs, concurrency {p.drain_concurrency}",
         "jobs/s (higher is better)")
    bars(axes[1], "io", "jobs_per_s", f"{p.io_jobs:,} x sleep({p.io_sleep:g}s), concurrency {p.io_concurrency}",
         "runs/s (higher is better)")
    ideal = p.io_concurrency / p.io_sleep
    axes[1].axhline(ideal, color="grey", linestyle="--", linewidth=1)
    axes[1].annotate(f"ideal {ideal:,.0f}/s", (len(ran("io")) - 0.5, ideal), ha="right", va="bottom", fontsize=8)
    lat = ran("latency")
    x = list(range(len(lat)))
    p50 = [_get(results, s, "latency", "p50_ms") or 0 for s in lat]
    p99 = [_get(results, s, "latency", "p99_ms") or 0 for s in lat]
    axes[2].bar([i - 0.2 for i in x], p50, width=0.4, label="p50", color="#4c72b0")
    axes[2].bar([i + 0.2 for i in x], p99, width=0.4, label="p99", color="#dd8452")
    axes[2].set_xticks(x, lat, rotation=20, ha="right", fontsize=8)
    axes[2].set_title(f"wake latency, {p.latency_jobs} jobs {p.latency_interval * 1000:g} ms apart", fontsize=10)
    axes[2].set_ylabel("ms, commit -> job start (lower is better)")
    axes[2].legend(fontsize=8)
    fig.suptitle("Same run, same PostgreSQL server, one worker process each", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# =================================================================================================
# Main
# =================================================================================================


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a sanity run (about a minute)")
    parser.add_argument("--jobs", type=int, default=None, help="no-op jobs to drain (default 20000; quick 2000)")
    parser.add_argument("--io-jobs", type=int, default=None, help="sleep jobs (default 5000; quick 1000)")
    parser.add_argument("--io-sleep", type=float, default=0.05, help="seconds each io job sleeps (default 0.05)")
    parser.add_argument("--io-concurrency", type=int, default=100, help="concurrency of the io test (default 100)")
    parser.add_argument("--drain-concurrency", type=int, default=200,
                        help="concurrency of the drain and latency tests (default 200: pgqueuer wants at least "
                             "twice the batch)")
    parser.add_argument("--batch-size", type=int, default=100,
                        help="claim batch of every system that has one (default 100; pgqueuer's io test: at most "
                             "io concurrency / 2, the most it accepts)")
    parser.add_argument("--latency-jobs", type=int, default=None, help="latency probes (default 200; quick 50)")
    parser.add_argument("--latency-interval", type=float, default=0.02, help="seconds between probes (0.02)")
    parser.add_argument("--systems", default=None, help="comma-separated subset (default: all registered)")
    parser.add_argument("--tests", default=",".join(TESTS), help=f"comma-separated subset of {','.join(TESTS)}")
    parser.add_argument("--uvloop", action="store_true", help="run every worker (and the harness) on uvloop")
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (2000 if args.quick else 20_000)
    args.io_jobs = args.io_jobs or (1000 if args.quick else 5000)
    args.latency_jobs = args.latency_jobs or (50 if args.quick else 200)
    args.test_list = [t for t in args.tests.split(",") if t]
    if bad := set(args.test_list) - set(TESTS):
        parser.error(f"unknown tests: {', '.join(sorted(bad))}")
    return args


async def amain(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    systems, unavailable, optional = registered_systems(args.io_sleep)
    if args.systems:
        wanted = [s for s in args.systems.split(",") if s]
        known = {s.name for s in systems} | set(unavailable)
        if bad := set(wanted) - known:
            raise SystemExit(f"unknown systems: {', '.join(sorted(bad))} (known: {', '.join(sorted(known))})")
        systems = [s for s in systems if s.name in wanted]
        unavailable = {k: v for k, v in unavailable.items() if k in wanted}
    else:
        for name in sorted(optional):
            print(f"bench: {name}: skipped by default (add it with --systems)", file=sys.stderr)
        systems = [s for s in systems if s.name not in optional]
    for name, why in unavailable.items():
        print(f"bench: {name}: {why}", file=sys.stderr)
    names = [s.name for s in systems]
    results: dict[str, dict[str, Any]] = {s.name: {} for s in systems}
    workdir = Path(tempfile.mkdtemp(prefix="automate-bench-peers-"))
    p = Params(args.jobs, args.io_jobs, args.io_sleep, args.io_concurrency, args.drain_concurrency,
               args.batch_size, args.latency_jobs, args.latency_interval, args.uvloop, workdir)
    try:
        with common.postgres_server() as admin:
            server = await asyncio.to_thread(common.server_info, admin)
            commit_before = await commit_probe(admin)
            # Test by test, every system in turn: slow drift on a shared machine spreads over all of them.
            for test in args.test_list:
                for system in systems:
                    if test not in system.tests:
                        continue
                    t = time.perf_counter()
                    try:
                        if test == "latency":
                            res: Any = await test_latency(system, admin, p)
                        else:
                            res = await test_drain(system, admin, p, io=test == "io")
                        summary = (f"{res['p50_ms']:.1f} / {res['p99_ms']:.1f} ms p50/p99" if test == "latency"
                                   else f"{res['jobs_per_s']:,.0f} jobs/s")
                    except NotMeasured as exc:
                        res = f"not measured: {exc}"
                        summary = res
                    except Exception as exc:  # one failing system must not hide the others' numbers
                        res = f"failed: {type(exc).__name__}: {exc}"
                        summary = res
                    results[system.name][test] = res
                    print(f"  {test:<8} {system.name:<16} {summary}  ({time.perf_counter() - t:.1f}s)",
                          file=sys.stderr)
            commit_after = await commit_probe(admin)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    for s in names:
        raw_drain = _get(results, "raw", "drain", "jobs_per_s")
        raw_io = _get(results, "raw", "io", "jobs_per_s")
        results[s]["ratios_vs_raw"] = {
            "drain": _round(common.ratio(_get(results, s, "drain", "jobs_per_s"), raw_drain)),
            "io": _round(common.ratio(_get(results, s, "io", "jobs_per_s"), raw_io)),
            "latency_p50": _round(common.ratio(_get(results, s, "latency", "p50_ms"),
                                               _get(results, "raw", "latency", "p50_ms"))),
        }
    data = {
        "benchmark": "peers",
        "what": "one worker process per system, each in a fresh database on the same server, same run",
        "baseline": "raw: asyncio + psycopg SKIP LOCKED batch claim / batch complete loop (the ceiling)",
        "config": {k: v for k, v in vars(p).items() if k != "workdir"},
        "versions": _versions(),
        "server": server,
        "commit_latency": {"before": commit_before, "after": commit_after},
        "machine": common.machine_info(),
        "systems": {s.name: {"label": s.label, "notes": s.notes, "settings": s.settings(p), "tests": list(s.tests)}
                    for s in systems},
        "unavailable": unavailable,
        "results": results,
        "wall_seconds": round(time.perf_counter() - began, 1),
    }
    path = common.write_results("peers", data)
    report(results, names, unavailable, p)
    print(f"one-row commit: p50 {commit_before['p50_ms']:.2f} ms before the tests, "
          f"{commit_after['p50_ms']:.2f} ms after (a worker that commits each job on its own, one at a time, "
          "stays under about 1000/p50 jobs/s)")
    png = common.RESULTS_DIR / "peers.png"
    chart(results, names, p, png)
    print(f"results: {common.shown(path)}, {common.shown(png)}  "
          f"({data['wall_seconds']}s)")
    failed = [f"{s} {t}" for s in names for t in TESTS if str(results[s].get(t, "")).startswith("failed")]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("procrastinate", "pgqueuer", "asyncpg", "psycopg", "psycopg-pool", "uvloop", "django-automate"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--worker" in argv:
        return pw.worker_entry(argv)
    args = parse_args(argv)
    return pw._run(amain(args), args.uvloop)


if __name__ == "__main__":
    sys.exit(main())

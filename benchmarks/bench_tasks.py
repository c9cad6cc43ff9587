"""Django tasks through one automate-aio-worker, next to the event drain, in one run on one server.

    python benchmarks/bench_tasks.py [--n 5000] [--rounds 3] [--concurrency 1000 --batch-size 500 --loop asyncio]

Each round, in fresh databases: N no-op events matched by a one-step ``transform`` workflow (the full
record path: Event, ExecutionRun, StepRun, job COMPLETED), then N no-op sync tasks (``@task def noop()``,
run in the worker's thread pool, result stored in ``payload.result``), then N no-op async tasks (on the
worker's loop). One worker, ``--concurrency 1000 --batch-size 500 --loop asyncio`` by default; timed
from the worker's banner (start-up done) to its ``--drain`` exit. Results in ``benchmarks/results/tasks.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common
import bench_worker as bw

FUNCS = '''from automate.tasks import task


@task
def noop():
    return None


@task
async def anoop():
    return None
'''

ENQUEUE_TASKS = """
INSERT INTO automate_outbox_job (kind, status, priority, payload, available_at, attempts, max_attempts)
SELECT 'task', 'PENDING', 0,
       jsonb_build_object('func', %(func)s::text, 'args', '[]'::jsonb, 'kwargs', '{}'::jsonb,
                          'queue', 'default', 'backend', 'default', 'takes_context', false),
       now(), 0, 4
FROM generate_series(1, %(n)s::int)
"""


def _tasks_db(admin: str, name: str, func: str, n: int) -> str:
    db = common.fresh_database(admin, name)
    common.migrate_automate(db)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(ENQUEUE_TASKS, {"func": func, "n": n})
        conn.execute("VACUUM ANALYZE")
    return db


def _task_counts(db: str) -> dict[str, int]:
    with psycopg.connect(db, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'COMPLETED' AND payload->'result'->>'status' = 'SUCCESSFUL'),"
            " count(*) FROM automate_outbox_job WHERE kind = 'task'"
        ).fetchone()
    assert row is not None
    return {"successful": row[0], "total": row[1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = ap.parse_args()
    n, conc, batch = args.n, args.concurrency, args.batch_size
    bw.WORKER_LOOP = args.loop
    results: dict[str, Any] = {"benchmark": "tasks", "machine": common.machine_info(), "n": n, "rounds": [],
                               "worker": f"--concurrency {conc} --batch-size {batch} --loop {args.loop}"}
    with tempfile.TemporaryDirectory() as tmp, common.postgres_server() as admin:
        workdir = Path(tmp)
        bw._steps_module(workdir)
        (workdir / "bench_task_funcs.py").write_text(FUNCS)
        results["server"] = common.server_info(admin)
        for r in range(args.rounds):
            row: dict[str, float] = {}
            db = bw._prepare(admin, f"bench_tasks_events_{r}", workdir, bw.NOOP, n)
            seconds, _ = bw._drain(db, workdir, 1, conc, batch)
            counts = bw._counts(db)
            assert counts["runs"] == counts["completed"] == n, counts
            row["events_per_s"] = n / seconds
            common.drop_database(admin, f"bench_tasks_events_{r}")
            for label, func in (("sync_tasks_per_s", "bench_task_funcs.noop"),
                                ("async_tasks_per_s", "bench_task_funcs.anoop")):
                name = f"bench_tasks_{label}_{r}"
                db = _tasks_db(admin, name, func, n)
                seconds, _ = bw._drain(db, workdir, 1, conc, batch)
                counts = _task_counts(db)
                assert counts == {"successful": n, "total": n}, counts
                row[label] = n / seconds
                common.drop_database(admin, name)
            results["rounds"].append(row)
            print(f"  round {r}: events {row['events_per_s']:,.0f}/s, sync tasks {row['sync_tasks_per_s']:,.0f}/s, "
                  f"async tasks {row['async_tasks_per_s']:,.0f}/s", file=sys.stderr)
    med = {k: common.median([row[k] for row in results["rounds"]]) for k in results["rounds"][0]}
    results["median"] = med
    common.print_table(
        ["measure (one worker, median of rounds)", "per second", "vs events"],
        [[f"{n:,} no-op events (full record path)", f"{med['events_per_s']:,.0f}", "100%"],
         [f"{n:,} no-op sync tasks (thread pool)", f"{med['sync_tasks_per_s']:,.0f}",
          f"{med['sync_tasks_per_s'] / med['events_per_s']:.0%}"],
         [f"{n:,} no-op async tasks (event loop)", f"{med['async_tasks_per_s']:,.0f}",
          f"{med['async_tasks_per_s'] / med['events_per_s']:.0%}"]],
        title="Django tasks on automate-aio-worker",
    )
    print(f"results: {common.shown(common.write_results('tasks', results))}")
    print(json.dumps(med))
    return 0


if __name__ == "__main__":
    sys.exit(main())

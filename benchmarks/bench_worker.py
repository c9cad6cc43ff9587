"""automate-aio-worker on its own: the full record path, scaling out, memory in flight, and a soak.

    python benchmarks/bench_worker.py [--events 20000] [--soak 100000] [--quick] [--parts record,scale,...]
    python benchmarks/bench_worker.py --profile OUT.html [--events 20000]

Every figure comes from one run against one server (a private embedded PostgreSQL unless
BENCH_DATABASE_URL is set), each measure in a fresh database:

1. record path: N events, each matched by a one-step no-op workflow (``transform``), drained by one worker
   (``--drain``), fully recorded (Event, ExecutionRun, StepRun, job COMPLETED). Baseline in the same run:
   a hand-written batch claim/complete loop over the same outbox (no runs, no steps: the ceiling for
   moving jobs at all, the "raw loop" of the foundation issue).
2. scale-out: the same N events with 1, 2 and 4 worker processes (the concurrency and the batch split
   between them); total throughput, and a check that no event ran twice (exactly one ExecutionRun per
   event, one StepRun per run). Baseline: the raw loop with as many processes.
3. in flight: 10,000 runs of a step that sleeps, all claimed at once (--concurrency 10000); the worker's
   peak RSS while they are all in flight.
4. soak: ``--soak`` events drained by one worker; its RSS sampled every second (first, peak, last).

The worker runs with ``--concurrency 1000 --batch-size 500 --loop asyncio`` unless ``--concurrency``,
``--batch-size`` or ``--loop`` say otherwise (the raw loops use the same batch). ``--parts`` picks
measures (default ``record,scale,inflight,soak``).

``--profile OUT.html`` runs only one full-record drain of ``--events`` events, with the worker under
pyinstrument (``python -m pyinstrument -r html -o OUT.html -m automate.aio ...``): where its time goes.

``--observability`` runs only the observability costs instead (``benchmarks/results/worker_observability.json``):
the same no-op drain as 1, one worker, in interleaved rounds, with tracing off and metrics off (the
baseline); with spans exported over OTLP/HTTP (``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a local OTLP
receiver in this script, which decodes and counts the spans); and with ``METRICS_EXPORT`` and
``--metrics-port``. ``--base PATH`` adds a mode running the worker from another source tree (an
``automate`` package at PATH, e.g. a ``git archive`` of an earlier commit) with tracing and metrics off:
the cost of the instrumentation points themselves.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

NOOP = [{"id": "t", "type": "transform", "config": {"output": {"i": "{{ event.payload.i }}"}}}]
SLEEP = [{"id": "s", "type": "python", "config": {"callable": "bench_worker_steps.nap", "kwargs": {"s": 5}}}]
SETTINGS = '{"POLICY": {"python_allowlist": ["bench_worker_steps.*"]}}'

PUBLISH = """
import json, sys
import django
django.setup()
from automate.workflows import publish
publish("bench", trigger_spec={"event": "bench.e"}, steps=json.loads(sys.argv[1]))
"""

ENQUEUE = """
WITH ev AS (
    INSERT INTO automate_event (id, type, payload, source, traceparent, tracestate, created_at)
    SELECT gen_random_uuid(), 'bench.e', jsonb_build_object('i', g), '', '', '', now()
    FROM generate_series(1, %(n)s::int) AS g
    RETURNING id
)
INSERT INTO automate_outbox_job (kind, status, priority, event_id, available_at, attempts, max_attempts)
SELECT 'event', 'PENDING', 0, ev.id, now(), 0, 4 FROM ev
"""

# The ceiling: claim a batch, complete it, nothing else (no matching, no runs, no steps).
RAW_LOOP = """
import sys, time, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
print("ready", flush=True)
sys.stdin.readline()
batch = int(sys.argv[2])
claim = '''UPDATE automate_outbox_job SET status = 'CLAIMED', worker_id = 'raw', attempts = attempts + 1,
    lease_expires_at = now() + interval '30 seconds'
  WHERE id = ANY(ARRAY(SELECT id FROM automate_outbox_job WHERE status = 'PENDING' AND available_at <= now()
                       ORDER BY priority DESC, id LIMIT %s FOR UPDATE SKIP LOCKED)) RETURNING id'''
done = "UPDATE automate_outbox_job SET status = 'COMPLETED', finished_at = now() WHERE id = ANY(%s)"
n = 0
while True:
    ids = [r[0] for r in conn.execute(claim, [batch]).fetchall()]
    if not ids:
        break
    conn.execute(done, [ids])
    n += len(ids)
print(n, time.time())
"""


# The record-path ceiling: the writes a worker makes per batch (runs and steps inserted in their final
# state, jobs completed, fenced by (id, claim token), one statement per batch), with no matching,
# templating, tasks or redaction: what PostgreSQL and psycopg allow for this schema on this machine. Its
# SQL is its own (not automate.queries'), so it measures the same thing while the worker's statements change.
RECORD_LOOP = """
import sys, time, uuid, datetime, orjson, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
print("ready", flush=True)
sys.stdin.readline()
batch = int(sys.argv[2])
claim = '''UPDATE automate_outbox_job j SET status = 'CLAIMED', worker_id = 'ceiling', attempts = attempts + 1,
    claim_token = claim_token + 1, lease_expires_at = now() + interval '30 seconds'
  WHERE id = ANY(ARRAY(SELECT id FROM automate_outbox_job WHERE status = 'PENDING' AND available_at <= now()
                       ORDER BY priority DESC, id LIMIT %s FOR UPDATE SKIP LOCKED))
  RETURNING j.id, j.event_id, j.claim_token'''
write = '''WITH owned AS (
    SELECT j.id, j.claim_token FROM automate_outbox_job j
    JOIN unnest(%(ids)s::bigint[], %(tokens)s::bigint[]) AS f(id, token) ON j.id = f.id AND j.claim_token = f.token
    WHERE j.status = 'CLAIMED' ORDER BY j.id FOR UPDATE OF j
), runs AS (
    INSERT INTO automate_execution_run (id, workflow_version_id, event_id, status, trace_id, outputs, error,
                                        created_at, started_at, finished_at)
    SELECT t.id, t.version_id, t.event_id, 'SUCCEEDED', '', t.outputs, '', now(), t.at, t.at
    FROM jsonb_to_recordset(%(runs)s::jsonb)
         AS t(id uuid, version_id bigint, event_id uuid, job_id bigint, token bigint, outputs jsonb, at timestamptz)
    WHERE (t.job_id, t.token) IN (SELECT id, claim_token FROM owned)
), steps AS (
    INSERT INTO automate_step_run (run_id, step_id, attempt, status, started_at, finished_at, output, error)
    SELECT t.run_id, 't', 1, 'SUCCEEDED', t.at, t.at, t.output, ''
    FROM jsonb_to_recordset(%(steps)s::jsonb)
         AS t(run_id uuid, job_id bigint, token bigint, output jsonb, at timestamptz)
    WHERE (t.job_id, t.token) IN (SELECT id, claim_token FROM owned)
)
UPDATE automate_outbox_job j SET status = 'COMPLETED', last_error = '', finished_at = now(), lease_expires_at = NULL
FROM owned WHERE j.id = owned.id'''
version = conn.execute("SELECT id FROM automate_workflow_version").fetchone()[0]
n = 0
while True:
    jobs = conn.execute(claim, [batch]).fetchall()
    if not jobs:
        break
    now = datetime.datetime.now(datetime.UTC)
    runs, steps = [], []
    for job_id, event_id, token in jobs:
        rid = uuid.uuid4()
        runs.append({"id": rid, "version_id": version, "event_id": event_id, "job_id": job_id, "token": token,
                     "outputs": {"t": {"i": 1}}, "at": now})
        steps.append({"run_id": rid, "job_id": job_id, "token": token, "output": {"i": 1}, "at": now})
    conn.execute(write, {"ids": [j[0] for j in jobs], "tokens": [j[2] for j in jobs],
                         "runs": orjson.dumps(runs).decode(), "steps": orjson.dumps(steps).decode()})
    n += len(jobs)
print(n, time.time())
"""


def _steps_module(workdir: Path) -> None:
    (workdir / "bench_worker_steps.py").write_text(
        "import asyncio\n\nasync def nap(s):\n    await asyncio.sleep(s)\n    return None\n"
    )


def _env(db: str, workdir: Path) -> dict[str, str]:
    env = common.child_env(db, BENCH_AUTOMATE_SETTINGS=SETTINGS)
    env["PYTHONPATH"] = f"{workdir}:{env['PYTHONPATH']}"
    return env


def _prepare(admin: str, name: str, workdir: Path, steps: list[dict[str, Any]], n: int) -> str:
    db = common.fresh_database(admin, name)
    common.migrate_automate(db)
    subprocess.run([sys.executable, "-c", PUBLISH, json.dumps(steps)], env=_env(db, workdir), check=True)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(ENQUEUE, {"n": n})
        conn.execute("VACUUM ANALYZE")
    return db


# The worker's event loop, named on every command line (main() sets it from --loop).
WORKER_LOOP = "asyncio"


def _worker_args(concurrency: int, batch: int, *, drain: bool = True) -> list[str]:
    args = ["--concurrency", str(concurrency), "--batch-size", str(batch), "--loop", WORKER_LOOP,
            "--log-level", "WARNING"]
    return [*args, "--drain"] if drain else args


def _worker_cmd(concurrency: int, batch: int, *, drain: bool = True) -> list[str]:
    return [sys.executable, "-m", "automate.aio", *_worker_args(concurrency, batch, drain=drain)]


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


class RssSampler:
    def __init__(self, pid: int, every: float = 1.0) -> None:
        self.pid, self.every = pid, every
        self.samples: list[float] = []
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = time.perf_counter()
        while not self._stop.wait(self.every):
            rss = _rss_mb(self.pid)
            if rss:
                self.samples.append(rss)
                self.times.append(round(time.perf_counter() - started, 2))

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        return self.samples


def _counts(db: str) -> dict[str, int]:
    with psycopg.connect(db, autocommit=True) as conn:
        q = {
            "events": "SELECT count(*) FROM automate_event",
            "completed": "SELECT count(*) FROM automate_outbox_job WHERE status = 'COMPLETED'",
            "runs": "SELECT count(*) FROM automate_execution_run WHERE status = 'SUCCEEDED'",
            "steps": "SELECT count(*) FROM automate_step_run WHERE status = 'SUCCEEDED'",
            "events_run_twice": "SELECT count(*) FROM (SELECT event_id FROM automate_execution_run "
            "GROUP BY event_id HAVING count(*) > 1) d",
            "steps_run_twice": "SELECT count(*) FROM (SELECT run_id FROM automate_step_run "
            "GROUP BY run_id HAVING count(*) > 1) d",
        }
        return {k: conn.execute(v).fetchone()[0] for k, v in q.items()}  # type: ignore[index]


def _started_at(proc: subprocess.Popen[str], stamps: list[float], ready: threading.Event | None = None,
                expected: int = 1) -> threading.Thread:
    """Stamp when the worker prints its banner (start-up done); set ``ready`` once ``expected`` have."""

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            # The banner, a log record: a plain line, or the message of an ECS JSON line.
            if "automate-aio-worker" in line and "stopped" not in line and "drain=" in line:
                stamps.append(time.perf_counter())
                if ready is not None and len(stamps) >= expected:
                    ready.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


# The start barrier: the jobs are held back (available later) while the workers start, then released for
# all at once, so start-up (a second or more each on a loaded machine, staggered between processes) is
# never counted, and N workers start on the queue together. --drain keeps waiting while a job is PENDING.
HOLD = "UPDATE automate_outbox_job SET available_at = now() + interval '1 day' WHERE status = 'PENDING'"
RELEASE = ("UPDATE automate_outbox_job SET available_at = now() WHERE status = 'PENDING'; "
           "NOTIFY automate_outbox")


def _drain_sampled(
    db: str, workdir: Path, workers: int, concurrency: int, batch: int,
    extra_env: dict[str, str] | None = None, extra_args: tuple[str, ...] = (),
) -> tuple[float, list[RssSampler]]:
    """Run ``workers`` worker processes with ``--drain``: (seconds from releasing the held jobs, once every
    worker printed its banner, to the last exit; the RSS samplers, one per process)."""
    stamps: list[float] = []
    ready = threading.Event()
    env = {**_env(db, workdir), **(extra_env or {})}
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(HOLD)
    procs = [
        subprocess.Popen([*_worker_cmd(concurrency, batch), *extra_args], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
    readers = [_started_at(p, stamps, ready, workers) for p in procs]
    samplers = [RssSampler(p.pid) for p in procs]
    try:
        deadline = time.monotonic() + 300
        while not ready.wait(0.1):
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise RuntimeError(f"the workers did not all start ({len(stamps)} of {workers} banners)")
        time.sleep(0.2)  # past the banner: connected and listening
        with psycopg.connect(db, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
            released = time.perf_counter()
            conn.execute(RELEASE)
        for p in procs:
            if p.wait(timeout=1800) != 0:
                raise RuntimeError(f"worker exited with {p.returncode}")
        end = time.perf_counter()
    finally:
        for p in procs:  # after an error or Ctrl-C: never leave a worker behind
            if p.poll() is None:
                p.terminate()
                p.wait(60)
        for sampler in samplers:
            sampler.stop()
    for r in readers:
        r.join(5)
    return end - released, samplers


def _drain(
    db: str, workdir: Path, workers: int, concurrency: int, batch: int,
    extra_env: dict[str, str] | None = None, extra_args: tuple[str, ...] = (),
) -> tuple[float, list[float]]:
    """As ``_drain_sampled``: (seconds, every RSS sample of every process)."""
    seconds, samplers = _drain_sampled(db, workdir, workers, concurrency, batch, extra_env, extra_args)
    return seconds, [s for sampler in samplers for s in sampler.samples]


def _timed_script(script: str, *args: str, processes: int = 1, expect: int | None = None) -> float:
    """Seconds from releasing ``processes`` copies of a loop script, all connected, to the last one's end.

    Each loop prints ``ready`` once connected, waits for a line on stdin, and prints ``jobs end`` (its
    clock) when done: start-up is not counted, as the worker's is not.
    """
    procs = [subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(processes)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("a loop did not start")
        released = time.time()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outs = [proc.communicate(timeout=1800)[0].split() for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if any(proc.returncode for proc in procs):
        raise RuntimeError(f"a loop exited with {[proc.returncode for proc in procs]}")
    jobs = sum(int(out[0]) for out in outs)
    if expect is not None and jobs != expect:
        raise RuntimeError(f"the loops moved {jobs} jobs, expected {expect}")
    return max(float(out[1]) for out in outs) - released


def record_path(admin: str, workdir: Path, n: int, rounds: int, conc: int, batch: int) -> dict[str, Any]:
    rows = []
    for r in range(rounds):
        db = _prepare(admin, f"bench_worker_raw_{r}", workdir, NOOP, n)
        raw_s = _timed_script(RAW_LOOP, db, str(batch), expect=n)
        common.drop_database(admin, f"bench_worker_raw_{r}")

        db = _prepare(admin, f"bench_worker_ceiling_{r}", workdir, NOOP, n)
        ceiling_s = _timed_script(RECORD_LOOP, db, str(batch), expect=n)
        assert _counts(db)["steps"] == n
        common.drop_database(admin, f"bench_worker_ceiling_{r}")

        db = _prepare(admin, f"bench_worker_rec_{r}", workdir, NOOP, n)
        seconds, _ = _drain(db, workdir, 1, conc, batch)
        counts = _counts(db)
        assert counts["runs"] == counts["steps"] == counts["completed"] == n, counts
        common.drop_database(admin, f"bench_worker_rec_{r}")
        rows.append({
            "raw_per_s": n / raw_s, "ceiling_per_s": n / ceiling_s, "automate_per_s": n / seconds,
            "vs_raw": raw_s / seconds, "vs_ceiling": ceiling_s / seconds,
        })
        print(f"  round {r}: raw loop {n / raw_s:,.0f}/s, record ceiling {n / ceiling_s:,.0f}/s, "
              f"automate {n / seconds:,.0f}/s", file=sys.stderr)
    best = max(rows, key=lambda x: x["automate_per_s"])
    return {
        "events": n,
        "rounds": rows,
        "median_vs_raw": common.median([x["vs_raw"] for x in rows]),
        "median_vs_ceiling": common.median([x["vs_ceiling"] for x in rows]),
        "best_automate_per_s": best["automate_per_s"],
        "method": "worker: jobs released (every worker started) to --drain exit; loops: released to done",
        "worker": f"--concurrency {conc} --batch-size {batch} --loop {WORKER_LOOP}",
        "loops": f"batch {batch}, one process, synchronous psycopg",
    }


def scale_out(admin: str, workdir: Path, n: int, conc: int, batch: int) -> dict[str, Any]:
    """1, 2 and 4 workers sharing the concurrency and the batch; the raw loop with as many processes."""
    out: dict[str, Any] = {}
    for workers in (1, 2, 4):
        name = f"bench_worker_scale_raw_{workers}"
        db = _prepare(admin, name, workdir, NOOP, n)
        raw_s = _timed_script(RAW_LOOP, db, str(max(1, batch // workers)), processes=workers, expect=n)
        common.drop_database(admin, name)
        name = f"bench_worker_scale_{workers}"
        db = _prepare(admin, name, workdir, NOOP, n)
        each_conc, each_batch = max(1, conc // workers), max(1, batch // workers)
        seconds, _ = _drain(db, workdir, workers, each_conc, each_batch)
        counts = _counts(db)
        common.drop_database(admin, name)
        out[str(workers)] = {"per_s": n / seconds, "raw_per_s": n / raw_s, "vs_raw": raw_s / seconds, **counts,
                             "worker": f"--concurrency {each_conc} --batch-size {each_batch} (each)"}
        print(f"  {workers} worker(s): {n / seconds:,.0f}/s (raw loop x{workers}: {n / raw_s:,.0f}/s) {counts}",
              file=sys.stderr)
    return out


def in_flight(admin: str, workdir: Path, n: int, batch: int) -> dict[str, Any]:
    name = "bench_worker_inflight"
    db = _prepare(admin, name, workdir, SLEEP, n)
    proc = subprocess.Popen(_worker_cmd(n, batch), env=_env(db, workdir), stdout=subprocess.DEVNULL)
    sampler = RssSampler(proc.pid, every=0.25)
    peak_inflight = 0
    try:
        with psycopg.connect(db, autocommit=True) as conn:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                claimed = conn.execute(
                    "SELECT count(*) FROM automate_outbox_job WHERE status = 'CLAIMED'"
                ).fetchone()[0]  # type: ignore[index]
                peak_inflight = max(peak_inflight, claimed)
                done = conn.execute(
                    "SELECT count(*) FROM automate_outbox_job WHERE status = 'COMPLETED'"
                ).fetchone()[0]  # type: ignore[index]
                if done == n:
                    break
                time.sleep(0.25)
    finally:
        proc.terminate()
        proc.wait(60)
        samples = sampler.stop()
        common.drop_database(admin, name)
    return {"runs": n, "peak_claimed": peak_inflight, "peak_rss_mb": max(samples, default=0.0),
            "rss_mb": samples, "rss_t": sampler.times,
            "step": "python async sleep(5)", "worker": f"--concurrency {n} --batch-size {batch} --loop {WORKER_LOOP}"}


def soak(admin: str, workdir: Path, n: int, conc: int, batch: int) -> dict[str, Any]:
    name = "bench_worker_soak"
    db = _prepare(admin, name, workdir, NOOP, n)
    seconds, samplers = _drain_sampled(db, workdir, 1, conc, batch)
    samples, times = samplers[0].samples, samplers[0].times
    counts = _counts(db)
    common.drop_database(admin, name)
    third = max(len(samples) // 3, 1)
    return {
        "events": n,
        "per_s": n / seconds,
        "rss_first_mb": samples[0] if samples else None,
        "rss_peak_mb": max(samples, default=None),
        "rss_last_mb": samples[-1] if samples else None,
        "rss_first_third_mean_mb": sum(samples[:third]) / third if samples else None,
        "rss_last_third_mean_mb": sum(samples[-third:]) / third if samples else None,
        "samples": len(samples),
        "rss_mb": samples,
        "rss_t": times,
        "all_recorded": counts["runs"] == counts["steps"] == counts["completed"] == n,
        "worker": f"--concurrency {conc} --batch-size {batch} --loop {WORKER_LOOP}",
    }


def profile(admin: str, workdir: Path, n: int, conc: int, batch: int, out: Path) -> dict[str, Any]:
    """One full-record drain with the worker under pyinstrument; the HTML profile goes to ``out``."""
    name = "bench_worker_profile"
    db = _prepare(admin, name, workdir, NOOP, n)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pyinstrument", "-r", "html", "-o", str(out), "-m", "automate.aio",
           *_worker_args(conc, batch)]
    started = time.perf_counter()
    try:
        subprocess.run(cmd, env=_env(db, workdir), stdout=subprocess.DEVNULL, check=True, timeout=1800)
        counts = _counts(db)
    finally:
        common.drop_database(admin, name)
    seconds = time.perf_counter() - started
    html = out.read_text() if out.exists() else ""
    # The worker's own frames must be in it: a profile of pyinstrument's launcher alone would not name them.
    frames = [f for f in ("automate/aio/worker.py", "automate/aio/executor.py", "automate/aio/recorder.py")
              if f in html]
    if counts["completed"] != n or not frames:
        raise RuntimeError(f"the profiled drain did not record {n} events or the profile misses the worker "
                           f"({counts}, frames found: {frames})")
    return {"events": n, "wall_s": round(seconds, 2), "html": common.shown(out), "bytes": len(html),
            "worker_frames_found": frames, "command": " ".join(cmd[1:8]) + " ... " + " ".join(cmd[8:]),
            "note": "profiled run, not timed: pyinstrument's sampling slows the worker"}


PARTS = ("record", "scale", "inflight", "soak")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--observability" in argv:
        import worker_observability

        return worker_observability.main(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the record path")
    ap.add_argument("--inflight", type=int, default=10_000)
    ap.add_argument("--soak", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--concurrency", type=int, default=1000, help="worker --concurrency (default 1000)")
    ap.add_argument("--batch-size", type=int, default=500, help="worker and raw loops' batch (default 500)")
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio", help="worker --loop")
    ap.add_argument("--profile", type=Path, metavar="OUT.html",
                    help="only profile one drain of --events events with pyinstrument, HTML to OUT.html")
    ap.add_argument("--observability", action="store_true",
                    help="only the tracing (OTLP) and metrics costs (worker_observability.py; --help there)")
    args = ap.parse_args(argv)
    if args.quick:
        args.events, args.rounds, args.inflight, args.soak = 2_000, 1, 1_000, 5_000
    parts = [p for p in args.parts.split(",") if p]
    if bad := set(parts) - set(PARTS):
        ap.error(f"unknown parts: {', '.join(sorted(bad))}")
    global WORKER_LOOP
    WORKER_LOOP = args.loop
    conc, batch = args.concurrency, args.batch_size
    import tempfile

    results: dict[str, Any] = {"benchmark": "worker", "machine": common.machine_info(),
                               "config": {"concurrency": conc, "batch_size": batch, "loop": args.loop}}
    with tempfile.TemporaryDirectory() as tmp, common.postgres_server() as admin:
        workdir = Path(tmp)
        _steps_module(workdir)
        results["server"] = common.server_info(admin)
        if args.profile:
            print(f"profile (one drain of {args.events:,} events under pyinstrument)", file=sys.stderr)
            results["profile"] = profile(admin, workdir, args.events, conc, batch, args.profile.resolve())
            path = common.write_results("worker_profile", results)
            print(f"profile: {results['profile']['html']}; results: {common.shown(path)}")
            return 0
        if "record" in parts:
            print("record path (one worker vs the raw claim/complete loop)", file=sys.stderr)
            results["record_path"] = record_path(admin, workdir, args.events, args.rounds, conc, batch)
        if "scale" in parts:
            print("scale-out", file=sys.stderr)
            results["scale_out"] = scale_out(admin, workdir, args.events, conc, batch)
        if "inflight" in parts:
            print("in flight", file=sys.stderr)
            results["in_flight"] = in_flight(admin, workdir, args.inflight, batch)
        if "soak" in parts:
            print("soak", file=sys.stderr)
            results["soak"] = soak(admin, workdir, args.soak, conc, batch)

    common.print_table(["measure", "value"], _summary(results), title="automate-aio-worker")
    path = common.write_results("worker", results)
    print(f"results: {common.shown(path)}")
    return 0


def _summary(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    if rp := results.get("record_path"):
        rows += [
            ["record path, events/s (best round)", f"{rp['best_automate_per_s']:,.0f}"],
            ["record path / raw claim-complete loop (median)", f"{rp['median_vs_raw']:.0%}"],
            ["record path / record-path ceiling loop (median)", f"{rp['median_vs_ceiling']:.0%}"],
        ]
    for w, v in results.get("scale_out", {}).items():
        rows.append([f"scale-out, {w} worker(s), events/s (raw loop x{w})",
                     f"{v['per_s']:,.0f} ({v['raw_per_s']:,.0f}; twice: {v['events_run_twice']})"])
    if inf := results.get("in_flight"):
        rows.append(["runs in flight / peak RSS MB", f"{inf['peak_claimed']:,} / {inf['peak_rss_mb']:.0f}"])
    if soaked := results.get("soak"):
        rows += [
            ["soak events/s", f"{soaked['per_s']:,.0f}"],
            ["soak RSS MB first / peak / last", "{:.0f} / {:.0f} / {:.0f}".format(
                soaked["rss_first_mb"] or 0, soaked["rss_peak_mb"] or 0, soaked["rss_last_mb"] or 0)],
        ]
    return rows


if __name__ == "__main__":
    sys.exit(main())

"""automate-aio-worker on its own: the full record path, scaling out, memory in flight, and a soak.

    python benchmarks/bench_worker.py [--events 20000] [--soak 100000] [--quick]

Every figure comes from one run against one server (a private embedded PostgreSQL unless
BENCH_DATABASE_URL is set), each measure in a fresh database:

1. record path: N events, each matched by a one-step no-op workflow (``transform``), drained by one worker
   (``--drain``), fully recorded (Event, ExecutionRun, StepRun, job COMPLETED). Baseline in the same run:
   a hand-written batch claim/complete loop over the same outbox (no runs, no steps: the ceiling for
   moving jobs at all, the "raw loop" of the foundation issue).
2. scale-out: the same N events with 1, 2 and 4 worker processes; total throughput, and a check that no
   event ran twice (exactly one ExecutionRun per event, one StepRun per run).
3. in flight: 10,000 runs of a step that sleeps, all claimed at once (--concurrency 10000); the worker's
   peak RSS while they are all in flight.
4. soak: ``--soak`` events drained by one worker; its RSS sampled every second (first, peak, last).

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
print(n)
"""


# The record-path ceiling: the same writes the worker makes per batch (runs and steps inserted in their
# final state, jobs completed, one transaction), with no matching, templating, tasks or redaction: what
# PostgreSQL and psycopg allow for this schema on this machine.
RECORD_LOOP = """
import sys, uuid, datetime, orjson, psycopg
sys.path.insert(0, sys.argv[3])
from automate import queries as q
conn = psycopg.connect(sys.argv[1], autocommit=True)
batch = int(sys.argv[2])
version = conn.execute("SELECT id FROM automate_workflow_version").fetchone()[0]
n = 0
while True:
    jobs = conn.execute(q.CLAIM_JOBS, {"worker_id": "ceiling", "limit": batch, "lease_seconds": 30}).fetchall()
    if not jobs:
        break
    now = datetime.datetime.now(datetime.UTC)
    ids = [j[0] for j in jobs]
    runs, steps, done = [], [], []
    for j in jobs:
        rid = uuid.uuid4()
        runs.append({"id": rid, "version_id": version, "event_id": j[2], "job_id": j[0], "token": j[7],
                     "status": "SUCCEEDED",
                     "trace_id": "", "outputs": {"t": {"i": 1}}, "error": "", "started_at": now, "finished_at": now})
        steps.append({"run_id": rid, "step_id": "t", "attempt": 1, "job_id": j[0], "token": j[7],
                      "status": "SUCCEEDED",
                      "started_at": now, "finished_at": now, "output": {"i": 1}, "error": ""})
        done.append({"id": j[0], "token": j[7], "status": "COMPLETED", "error": ""})
    fence = {"job_ids": ids, "tokens": [j[7] for j in jobs]}  # fenced by (id, claim token), as the worker
    with conn.transaction():
        conn.execute(q.LOCK_OWNED_JOBS, fence)
        conn.execute(q.UPSERT_RUNS, {"job_ids": ids, "rows": orjson.dumps(runs).decode()})
        conn.execute(q.UPSERT_STEPS, {"job_ids": ids, "rows": orjson.dumps(steps).decode()})
        conn.execute(q.FINISH_JOBS, {"rows": orjson.dumps(done).decode()})
    n += len(jobs)
print(n)
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
    import json

    subprocess.run([sys.executable, "-c", PUBLISH, json.dumps(steps)], env=_env(db, workdir), check=True)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(ENQUEUE, {"n": n})
        conn.execute("VACUUM ANALYZE")
    return db


def _worker_cmd(concurrency: int, batch: int, *, drain: bool = True) -> list[str]:
    cmd = [sys.executable, "-m", "automate.aio", "--concurrency", str(concurrency), "--batch-size", str(batch),
           "--log-level", "WARNING"]
    return [*cmd, "--drain"] if drain else cmd


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
        self.pid, self.every, self.samples = pid, every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            rss = _rss_mb(self.pid)
            if rss:
                self.samples.append(rss)

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


def _started_at(proc: subprocess.Popen[str], stamps: list[float]) -> threading.Thread:
    """Stamp when the worker prints its banner (start-up done), so start-up is not counted."""

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            # The banner, a log record: a plain line, or the message of an ECS JSON line.
            if "automate-aio-worker" in line and "stopped" not in line and "drain=" in line:
                stamps.append(time.perf_counter())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def _drain(
    db: str, workdir: Path, workers: int, concurrency: int, batch: int,
    extra_env: dict[str, str] | None = None, extra_args: tuple[str, ...] = (),
) -> tuple[float, list[float]]:
    stamps: list[float] = []
    env = {**_env(db, workdir), **(extra_env or {})}
    procs = [
        subprocess.Popen([*_worker_cmd(concurrency, batch), *extra_args], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
    readers = [_started_at(p, stamps) for p in procs]
    samplers = [RssSampler(p.pid) for p in procs]
    for p in procs:
        if p.wait(timeout=1800) != 0:
            raise RuntimeError(f"worker exited with {p.returncode}")
    end = time.perf_counter()
    for r in readers:
        r.join(5)
    seconds = end - min(stamps)
    rss = [s for sampler in samplers for s in sampler.stop()]
    return seconds, rss


def _timed_script(script: str, *args: str) -> float:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    return seconds if out.stdout.strip() else float("nan")


def record_path(admin: str, workdir: Path, n: int, rounds: int) -> dict[str, Any]:
    rows = []
    for r in range(rounds):
        db = _prepare(admin, f"bench_worker_raw_{r}", workdir, NOOP, n)
        raw_s = _timed_script(RAW_LOOP, db, "500")
        common.drop_database(admin, f"bench_worker_raw_{r}")

        db = _prepare(admin, f"bench_worker_ceiling_{r}", workdir, NOOP, n)
        ceiling_s = _timed_script(RECORD_LOOP, db, "500", str(common.REPO_ROOT))
        assert _counts(db)["steps"] == n
        common.drop_database(admin, f"bench_worker_ceiling_{r}")

        db = _prepare(admin, f"bench_worker_rec_{r}", workdir, NOOP, n)
        seconds, _ = _drain(db, workdir, 1, 1000, 500)
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
        "method": "worker: banner (start-up done) to --drain exit; loops: process start to exit",
        "worker": "--concurrency 1000 --batch-size 500",
    }


def scale_out(admin: str, workdir: Path, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for workers in (1, 2, 4):
        name = f"bench_worker_scale_{workers}"
        db = _prepare(admin, name, workdir, NOOP, n)
        seconds, _ = _drain(db, workdir, workers, 1000 // workers, 500 // workers)
        counts = _counts(db)
        common.drop_database(admin, name)
        out[str(workers)] = {"per_s": n / seconds, **counts}
        print(f"  {workers} worker(s): {n / seconds:,.0f}/s {counts}", file=sys.stderr)
    return out


def in_flight(admin: str, workdir: Path, n: int) -> dict[str, Any]:
    name = "bench_worker_inflight"
    db = _prepare(admin, name, workdir, SLEEP, n)
    proc = subprocess.Popen(_worker_cmd(n, 500), env=_env(db, workdir), stdout=subprocess.DEVNULL)
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
            "step": "python async sleep(5)", "worker": f"--concurrency {n} --batch-size 500"}


def soak(admin: str, workdir: Path, n: int) -> dict[str, Any]:
    name = "bench_worker_soak"
    db = _prepare(admin, name, workdir, NOOP, n)
    seconds, samples = _drain(db, workdir, 1, 1000, 500)
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
        "all_recorded": counts["runs"] == counts["steps"] == counts["completed"] == n,
    }


class _OtlpSink:
    """A local OTLP/HTTP receiver: decodes every export and counts the spans (a real collector's work)."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        sink = self
        self.spans = 0
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
                with sink.lock:
                    sink.spans += n
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def observability(admin: str, workdir: Path, n: int, rounds: int, base: str | None) -> dict[str, Any]:
    """Throughput of the no-op drain with tracing (OTLP) or metrics on, as a ratio to both off."""
    sink = _OtlpSink()
    modes: dict[str, dict[str, Any]] = {
        "off": {},
        "otlp": {"env": {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_SERVICE_NAME": "bench-worker"}},
        "metrics": {"env": {"BENCH_AUTOMATE_SETTINGS": json.dumps({**json.loads(SETTINGS), "METRICS_EXPORT": True})},
                    "metrics": True},
    }
    if base:
        modes["base"] = {"env": {"PYTHONPATH": f"{base}:{_env('', workdir)['PYTHONPATH']}"}}
    per_s: dict[str, list[float]] = {m: [] for m in modes}
    ratios: dict[str, list[float]] = {m: [] for m in modes if m != "off"}
    spans_per_event: list[float] = []
    names = list(modes)
    try:
        for r in range(rounds):
            order = names[r % len(names):] + names[: r % len(names)]  # rotate: no mode always runs first
            seconds: dict[str, float] = {}
            for mode in order:
                name = f"bench_worker_obs_{mode}_{r}"
                db = _prepare(admin, name, workdir, NOOP, n)
                spans_before = sink.spans
                args = ("--metrics-port", str(_free_port()), "--metrics-addr", "127.0.0.1") if modes[mode].get(
                    "metrics") else ()
                seconds[mode], _ = _drain(db, workdir, 1, 1000, 500, modes[mode].get("env"), args)
                counts = _counts(db)
                assert counts["runs"] == counts["steps"] == counts["completed"] == n, (mode, counts)
                common.drop_database(admin, name)
                if mode == "otlp":
                    spans_per_event.append((sink.spans - spans_before) / n)
                per_s[mode].append(n / seconds[mode])
            for mode in ratios:
                ratios[mode].append(seconds["off"] / seconds[mode])
            print("  round {}: {}".format(r, ", ".join(f"{m} {n / seconds[m]:,.0f}/s" for m in names)),
                  file=sys.stderr)
    finally:
        sink.close()
    return {
        "events": n,
        "rounds": rounds,
        "per_s": per_s,
        "ratio_to_off": ratios,
        "median_ratio_to_off": {m: common.median(v) for m, v in ratios.items()},
        "spans_per_event": spans_per_event,
        "method": "one worker --concurrency 1000 --batch-size 500 --drain, banner to exit; ratios paired within "
        "each round (off seconds / mode seconds: throughput of the mode as a share of off)",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--inflight", type=int, default=10_000)
    ap.add_argument("--soak", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    ap.add_argument("--observability", action="store_true",
                    help="only the tracing (OTLP) and metrics costs, as ratios to both off")
    ap.add_argument("--base", help="with --observability: also run the worker from the automate package at this path")
    args = ap.parse_args()
    if args.quick:
        args.events, args.rounds, args.inflight, args.soak = 2_000, 1, 1_000, 5_000
    import tempfile

    if args.observability:
        return _observability_main(args)

    results: dict[str, Any] = {"benchmark": "worker", "machine": common.machine_info()}
    with tempfile.TemporaryDirectory() as tmp, common.postgres_server() as admin:
        workdir = Path(tmp)
        _steps_module(workdir)
        results["server"] = common.server_info(admin)
        print("record path (one worker vs the raw claim/complete loop)", file=sys.stderr)
        results["record_path"] = record_path(admin, workdir, args.events, args.rounds)
        print("scale-out", file=sys.stderr)
        results["scale_out"] = scale_out(admin, workdir, args.events)
        print("in flight", file=sys.stderr)
        results["in_flight"] = in_flight(admin, workdir, args.inflight)
        print("soak", file=sys.stderr)
        results["soak"] = soak(admin, workdir, args.soak)

    rp = results["record_path"]
    common.print_table(
        ["measure", "value"],
        [
            ["record path, events/s (best round)", f"{rp['best_automate_per_s']:,.0f}"],
            ["record path / raw claim-complete loop (median)", f"{rp['median_vs_raw']:.0%}"],
            ["record path / record-path ceiling loop (median)", f"{rp['median_vs_ceiling']:.0%}"],
            *[[f"scale-out, {w} worker(s), events/s", f"{v['per_s']:,.0f} (twice: {v['events_run_twice']})"]
              for w, v in results["scale_out"].items()],
            ["runs in flight / peak RSS MB",
             f"{results['in_flight']['peak_claimed']:,} / {results['in_flight']['peak_rss_mb']:.0f}"],
            ["soak events/s", f"{results['soak']['per_s']:,.0f}"],
            ["soak RSS MB first / peak / last", "{:.0f} / {:.0f} / {:.0f}".format(
                results["soak"]["rss_first_mb"] or 0, results["soak"]["rss_peak_mb"] or 0,
                results["soak"]["rss_last_mb"] or 0)],
        ],
        title="automate-aio-worker",
    )
    path = common.write_results("worker", results)
    print(f"results: {path}")
    return 0


def _observability_main(args: argparse.Namespace) -> int:
    import tempfile

    results: dict[str, Any] = {"benchmark": "worker_observability", "machine": common.machine_info()}
    with tempfile.TemporaryDirectory() as tmp, common.postgres_server() as admin:
        workdir = Path(tmp)
        _steps_module(workdir)
        results["server"] = common.server_info(admin)
        print("observability (no-op drain: off, OTLP tracing, metrics)", file=sys.stderr)
        results["observability"] = obs = observability(admin, workdir, args.events, args.rounds, args.base)
    rows = [[mode, f"{common.median(v):,.0f}", "1.00" if mode == "off" else f"{obs['median_ratio_to_off'][mode]:.2f}"]
            for mode, v in obs["per_s"].items()]
    common.print_table(["mode", "events/s (median)", "throughput / off (median of paired ratios)"], rows,
                       title="automate-aio-worker: cost of tracing and metrics")
    path = common.write_results("worker_observability", results)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The whole benchmark suite in one command: ``python -m benchmarks [--quick] [--profile]`` (or ``nox -s bench``).

One private PostgreSQL (pgserver, ``_common.postgres_server()``; or ``$BENCH_DATABASE_URL``) serves every
benchmark: its admin URL goes to each script as ``BENCH_DATABASE_URL``, so none starts its own. The
scripts run one after the other, each in its own process group, writing their results into a scratch
folder (``BENCH_RESULTS_DIR``); the suite reads them and writes, for the day of the run:

* ``benchmarks/results/<date>.json``: every script's results, the report's rows, the run's facts;
* ``benchmarks/results/<date>.md``: the report as a Markdown table (report.py);
* ``benchmarks/results/<date>-<group>.png``: one chart per group (charts.py);
* ``benchmarks/results/<date>-worker-profile.html`` with ``--profile``: pyinstrument's profile of the
  worker during one more full-record drain (not timed: the profiler slows it).

The server is stopped and deleted at the end, also after an error, Ctrl-C or SIGTERM (the running
script's process group gets SIGINT first, so it stops its own workers, then SIGTERM, then SIGKILL).
A script that fails is reported as failed, the others still run, and the suite exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common as common

PY = sys.executable


@dataclass
class Step:
    name: str
    script: str
    args: list[str]
    outputs: list[str]  # result files (names without .json) the script writes
    timeout: float
    needs: str = ""  # an executable that must be on PATH, else the step is skipped
    result: dict[str, Any] = field(default_factory=dict)


def plan(quick: bool, batch: int, profile_out: Path | None) -> list[Step]:
    """The steps, sized for --quick (under 3 minutes in all) or the full run (under 20)."""
    conc = 2 * batch  # pgqueuer refuses a batch above half its concurrency: the drains all run at 2 x batch
    worker = ["--concurrency", str(conc), "--batch-size", str(batch), "--loop", "asyncio"]
    q = quick
    steps = [
        Step("pgbench", "bench_pgbench.py", ["--seconds", "1" if q else "5", "--clients", "1,4,16"], ["pgbench"],
             120, needs="pgbench"),
        Step("emit", "bench_emit.py", ["--quick"] if q else [], ["emit"], 600),
        Step("peers", "bench_peers.py", [*(["--quick"] if q else []), "--batch-size", str(batch),
                                         "--drain-concurrency", str(conc)], ["peers"], 900),
        Step("worker", "bench_worker.py",
             [*worker, *(["--quick"] if q else ["--events", "20000", "--rounds", "1", "--inflight", "10000",
                                                  "--soak", "100000"])], ["worker"], 1200),
        Step("observability", "bench_worker.py",
             ["--observability", "--modes", "otlp", *worker, "--events", "2000" if q else "20000",
              "--rounds", "1" if q else "2"], ["worker_observability"], 900),
        Step("tasks", "bench_tasks.py", ["--n", "1000" if q else "5000", "--rounds", "1", *worker], ["tasks"], 600),
        Step("rules", "bench_rules.py",
             ["--seconds", "0.2", "--rounds", "2", "--passes", "1"] if q else ["--seconds", "1", "--passes", "2"],
             ["rules"], 600),
        Step("redaction", "bench_redaction.py", ["--seconds", "0.3" if q else "1.5"], ["redaction"], 300),
    ]
    if profile_out is not None:
        steps.append(Step("profile", "bench_worker.py",
                          ["--profile", str(profile_out), *worker, "--events", "5000" if q else "20000"],
                          ["worker_profile"], 900))
    return steps


# --- running one script --------------------------------------------------------------------------


class Interrupted(Exception):
    """SIGTERM (e.g. nox or CI stopping us): unwound like Ctrl-C, so the server is stopped."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the script's process group (its workers too): SIGINT, then SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # leftovers of an exited script (its workers)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_step(step: Step, admin: str, scratch: Path) -> None:
    if step.needs and shutil.which(step.needs) is None:
        step.result = {"status": "skipped", "why": f"{step.needs} is not on PATH"}
        print(f"  {step.name:<14} skipped: {step.needs} is not on PATH", flush=True)
        return
    step.result = {"status": "interrupted", "why": "the run was stopped during this step"}
    log = scratch / f"{step.name}.log"
    env = dict(os.environ, BENCH_DATABASE_URL=admin, BENCH_RESULTS_DIR=str(scratch))
    cmd = [PY, str(common.BENCH_DIR / step.script), *step.args]
    started = time.perf_counter()
    print(f"  {step.name:<14} {' '.join([step.script, *step.args])}", flush=True)
    with log.open("wb") as out:
        # Its own session: Ctrl-C reaches only us, and we stop the script's whole group in order.
        # SIGINT back to its default: a suite started in the background has it ignored, and the children
        # would inherit that, so our SIGINT (the graceful stop) would not reach them.
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=common.REPO_ROOT, env=env,
                                start_new_session=True, preexec_fn=_default_sigint)
        try:
            rc: int | None = proc.wait(step.timeout)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            _stop_group(proc)
    seconds = round(time.perf_counter() - started, 1)
    data = {}
    for name in step.outputs:
        path = scratch / f"{name}.json"
        if path.exists():
            data[name] = json.loads(path.read_text())
    ok = rc == 0 and len(data) == len(step.outputs)
    why = "" if ok else ("timed out" if rc is None else f"exit {rc}" if rc else "no result file")
    step.result = {"status": "ok" if ok else "failed", "seconds": seconds, "command": cmd[1:], "data": data,
                   **({"why": why, "log_tail": _tail(log)} if not ok else {})}
    print(f"  {step.name:<14} {'ok' if ok else 'FAILED (' + why + ')'} in {seconds:.0f}s", flush=True)
    if not ok:
        print("    " + "\n    ".join(step.result["log_tail"].splitlines()[-15:]), flush=True)


def _tail(path: Path, chars: int = 4000) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    # The workers' JSON log lines are noise here; keep the script's own output.
    lines = [line for line in text.splitlines() if not line.startswith("{")]
    return "\n".join(lines)[-chars:]


# --- the run -------------------------------------------------------------------------------------


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=common.REPO_ROOT, capture_output=True, text=True, check=False)
    return done.stdout


def run_facts() -> dict[str, Any]:
    """Which code ran: HEAD and whether automate/ or benchmarks/ (results aside) differ from it."""
    status = _git("status", "--porcelain", "--untracked-files=all", "--", "automate", "benchmarks")
    dirty = [line[3:] for line in status.splitlines()  # "XY path": the path starts at column 3
             if line[3:] and not line[3:].startswith("benchmarks/results/")]
    subject = _git("log", "-1", "--format=%s").strip()
    return {"head": _git("rev-parse", "HEAD").strip(),
            "head_subject": subject if len(subject) <= 90 else subject[:87] + "...",
            "dirty": dirty, "on_head": not dirty}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: the whole suite in under 3 minutes")
    ap.add_argument("--profile", action="store_true",
                    help="also profile the worker (pyinstrument) during one more full-record drain")
    ap.add_argument("--batch-size", type=int, default=100, help="every system's claim batch (default 100)")
    ap.add_argument("--only", default="", help="comma-separated steps (default all): "
                    "pgbench,emit,peers,worker,observability,tasks,rules,redaction,profile")
    ap.add_argument("--out", type=Path, default=common.BENCH_DIR / "results", help="results folder")
    ap.add_argument("--date", default=datetime.date.today().isoformat(), help="name of the results (YYYY-MM-DD)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import charts
    import report

    began = time.perf_counter()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    profile_out = out / f"{args.date}-worker-profile.html" if args.profile else None
    steps = plan(args.quick, args.batch_size, profile_out)
    if args.only:
        wanted = set(args.only.split(","))
        steps = [s for s in steps if s.name in wanted]
    # Inside the repository whatever --out says (the scripts name their files relative to it); it ignores
    # itself, so a killed run leaves nothing git would pick up.
    scratch = common.BENCH_DIR / "results" / f".suite-{os.getpid()}"
    scratch.mkdir()
    (scratch / ".gitignore").write_text("*\n")  # never committed, even if the run is killed
    facts = {"mode": "quick" if args.quick else "full", "date": args.date, "batch_size": args.batch_size,
             "started_at": datetime.datetime.now().isoformat(timespec="seconds"), **run_facts()}
    print(f"benchmarks: {facts['mode']} run of {facts['head'][:10]}{' (with local changes)' if facts['dirty'] else ''}"
          f", batch {args.batch_size}", flush=True)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    interrupted = False
    try:
        with common.postgres_server() as admin:
            facts["server"] = common.server_info(admin)
            facts["commit_latency_before"] = _commit_probe(admin)
            for step in steps:
                run_step(step, admin, scratch)
            facts["commit_latency_after"] = _commit_probe(admin)
    except (KeyboardInterrupt, Interrupted):
        interrupted = True
        print("benchmarks: interrupted; the server is stopped, partial results follow", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
    facts["machine"] = common.machine_info()
    facts["wall_seconds"] = round(time.perf_counter() - began, 1)
    facts["steps"] = {s.name: {k: v for k, v in s.result.items() if k != "data"} for s in steps}
    raw = {name: data for s in steps for name, data in s.result.get("data", {}).items()}
    built = report.build(raw, facts)
    pngs = charts.render(raw, built, out, args.date)
    built["charts"] = [p.name for p in pngs]
    if profile_out is not None and profile_out.exists():
        built["profile"] = profile_out.name
    json_path = out / f"{args.date}.json"
    json_path.write_text(json.dumps({**built, "results": raw}, indent=1, default=str) + "\n")
    md_path = out / f"{args.date}.md"
    md_path.write_text(report.markdown(built))
    print(report.markdown_table(built["rows"]))
    failed = [s.name for s in steps if s.result.get("status") == "failed"]
    if failed or interrupted:
        print(f"benchmarks: {'interrupted' if interrupted else 'FAILED: ' + ', '.join(failed)}; "
              f"logs kept in {common.shown(scratch)}", file=sys.stderr)
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"benchmarks: {common.shown(md_path)}, {common.shown(json_path)}, {len(pngs)} charts "
          f"({facts['wall_seconds'] / 60:.1f} min)")
    return 1 if failed or interrupted else 0


def _commit_probe(admin: str) -> dict[str, float]:
    name = "bench_suite_commit_probe"
    url = common.fresh_database(admin, name)
    try:
        return common.commit_latency_ms(url)
    finally:
        common.drop_database(admin, name)

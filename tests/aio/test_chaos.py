"""Fault injection (issue 8): thousands of jobs through real worker processes while things go wrong.

Run it alone with ``pytest tests/aio/test_chaos.py`` (or ``-k chaos``). Environment:

    AUTOMATE_CHAOS_SEED   the seed of every random choice (default 20261202); printed, and in every message
    AUTOMATE_CHAOS_JOBS   how many jobs (default 300, a short run; ``nox -s chaos`` runs 3000)

What it does, for the whole run:

- events in bursts, each with a fault chosen by the seeded RNG and written into its payload (so each job's
  expected outcome is known): healthy DAG runs, direct runs (run_workflow), poison outputs (NUL, lone
  surrogates, NaN/inf, 50- and 300-level nesting, 2 MB), steps that raise (also with NUL or a surrogate in
  the message), ``when`` rules that raise (RuleLimitError from ``cat`` over a 600 KB payload string, or
  over a step's 600 KB list output), a trigger rule that raises, a template over a missing
  path, a missing secret and a secret backend that fails at random, steps that time out (with retries),
  retries parked in the database; a quarter of the events is also matched by a second workflow;
- two worker subprocesses (``python -m automate.aio``, short leases) the whole time;
- a chaos thread that, at random intervals, terminates a random worker connection
  (``pg_terminate_backend``), SIGTERMs a worker or SIGKILLs one (starting a replacement each time), and
  notes any worker that exits on its own.

Then it stops injecting, waits for the outbox to drain (no job PENDING or CLAIMED), SIGTERMs the workers
and checks the invariants and each fault's expected outcome with SQL. Every problem found is collected;
the test fails once, at the end, listing them all (with the seed).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from automate.runtime import emit_event, run_workflow
from automate.workflows import publish
from tests.aio.procs import ROOT
from tests.chaos_steps import TOKEN

SEED = int(os.environ.get("AUTOMATE_CHAOS_SEED", "20261202"))
JOBS = int(os.environ.get("AUTOMATE_CHAOS_JOBS", "300"))

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300 + int(JOBS * 0.5))]

LEASE_SECONDS = 2
WORKER_APPS = ("automate-worker", "automate-claimer", "automate-listener")
KILL_WINDOW = 3.0  # a step that ended this long before a SIGKILL may not have been recorded yet
STALL_SECONDS = 45.0  # drain: give up when no job has finished for this long

# ---------------------------------------------------------------------------------------------------
# Workflows


def _kwargs(path: str, **more: Any) -> dict[str, Any]:
    return {
        "path": path,
        "fault": "{{ event.payload.fault }}",
        "at": "{{ event.payload.at }}",
        "n": "{{ event.payload.n }}",
        "sleep": "{{ event.payload.sleep }}",
        **more,
    }


def _py(step_id: str, path: str, *, sync: bool = False, **fields: Any) -> dict[str, Any]:
    more = fields.pop("kwargs", {})
    return {
        "id": step_id,
        "type": "python",
        "config": {"callable": f"tests.chaos_steps.{'act' if sync else 'aact'}", "kwargs": _kwargs(path, **more)},
        **fields,
    }


QUICK_RETRY = {"kind": "fixed", "base_seconds": 0.1, "max_seconds": 0.1, "jitter": "none"}
BLOB_CAT = {"!=": [{"cat": [{"var": "event.payload.blob"}, {"var": "event.payload.blob"}]}, "never"]}


def publish_workflows(path: str) -> None:
    retrying = {"timeout_seconds": 1, "max_retries": 2, "retry": QUICK_RETRY}
    publish(
        "dag",
        trigger_spec={"event": "chaos.dag"},
        steps=[
            _py("a", path, sync=True, timeout_seconds=10, max_retries=2, retry=QUICK_RETRY),
            _py("b", path, depends_on=["a"], kwargs={"prev": "{{ steps.a.output.n }}"}, **retrying),
            _py("e", path, **retrying),
            {
                "id": "c",
                "type": "transform",
                "depends_on": ["a", "b", "e"],
                "config": {
                    "output": {
                        "sum": {"$expr": {"+": [{"var": "steps.a.output.n"}, {"var": "steps.b.output.n"}]}},
                        "text": "run {{ run.id }}",
                    }
                },
            },
            {"id": "d", "type": "transform", "depends_on": ["a"], "when": {"==": [1, 2]}, "config": {"output": 1}},
        ],
    )
    publish(
        "guarded",
        trigger_spec={"event": "chaos.when"},
        steps=[
            _py("a", path, sync=True),
            _py("b", path, depends_on=["a"], when=BLOB_CAT),
            {
                "id": "c",
                "type": "transform",
                "depends_on": ["a"],
                "when": {"!=": [{"cat": [{"var": "steps.a.output.parts"}, {"var": "steps.a.output.parts"}]}, "never"]},
                "config": {"output": "c"},
            },
            {"id": "d", "type": "transform", "depends_on": ["b", "c"], "config": {"output": "done"}},
        ],
    )
    # Same event type, a trigger rule that raises on the big blob: the event is then not matched by it.
    publish(
        "trigger-raise",
        trigger_spec={"event": "chaos.when", "rule": BLOB_CAT},
        steps=[{"id": "t", "type": "transform", "config": {"output": "matched"}}],
    )
    publish("guarded-single", trigger_spec={"event": "chaos.when_single"}, steps=[_py("s", path, when=BLOB_CAT)])
    publish(
        "templated",
        trigger_spec={"event": "chaos.template"},
        steps=[
            _py("a", path, sync=True),
            {
                "id": "b",
                "type": "transform",
                "depends_on": ["a"],
                "config": {"output": {"x": "{{ event.payload.missing.path }}"}},
            },
        ],
    )
    publish(
        "secrets",
        trigger_spec={"event": "chaos.secret"},
        steps=[
            _py("a", path, sync=True, kwargs={"token": "$secret:CHAOS_TOKEN"}),
            _py(
                "b",
                path,
                depends_on=["a"],
                kwargs={"key": "$secret:CHAOS_FLAKY"},
                max_retries=3,
                retry={"kind": "fixed", "base_seconds": 0.05, "max_seconds": 0.05, "jitter": "none"},
            ),
        ],
    )
    publish(
        "secret-missing",
        trigger_spec={"event": "chaos.secret_missing"},
        steps=[_py("s", path, kwargs={"key": "$secret:CHAOS_NOPE"})],
    )
    # A retry wait of 1.5 s is longer than park_after_seconds (1.0 in tests/chaos_settings.py): parked.
    publish(
        "parking",
        trigger_spec={"event": "chaos.park"},
        steps=[
            _py(
                "a",
                path,
                timeout_seconds=2,
                max_retries=2,
                retry={"kind": "fixed", "base_seconds": 1.5, "max_seconds": 1.5, "jitter": "none"},
            ),
            {"id": "b", "type": "transform", "depends_on": ["a"], "config": {"output": "{{ steps.a.output.n }}"}},
        ],
    )
    # A second workflow on the same events (a quarter of them).
    publish(
        "audit",
        trigger_spec={"event": "chaos.*", "rule": {"==": [{"var": "event.payload.audit"}, True]}},
        steps=[_py("audit_mark", path, sync=True)],
    )


# ---------------------------------------------------------------------------------------------------
# Faults: what each event asks for, and the outcome expected of its job.

ANY_ERROR = r"."  # the step id check is the cause check
POISON_CAUSE = (
    r"(?i)nul|\\u0000|\\x00|0x00|\bnull\b|surrogat|utf-?8|unicode|encod|serializ|serialis|json|nan|infinit"
    r"|depth|deep|nest|recursion|size|large|big"
)


@dataclasses.dataclass(frozen=True)
class Fault:
    name: str
    event_type: str  # "direct": run_workflow("dag", ...)
    weight: float
    outcome: str  # ok | fail | either
    at: tuple[str, ...] = ("a",)  # the failing step (one is chosen)
    cause: str = ANY_ERROR  # a regex the run's error and the job's last_error must match (after the step id)
    blob: str = ""


FAULTS = [
    Fault("ok", "chaos.dag", 40, "ok", ("",)),
    Fault("direct_ok", "direct", 4, "ok", ("",)),
    Fault("direct_raise", "direct", 1, "fail", ("a", "b", "e"), r"chaos step failure #\d+"),
    Fault("raise", "chaos.dag", 4, "fail", ("a", "b", "e"), r"chaos step failure #\d+"),
    Fault("timeout_ok", "chaos.dag", 3, "ok", ("b", "e")),
    Fault("timeout_fail", "chaos.dag", 2, "fail", ("b", "e"), r"(?i)timed? ?out"),
    Fault("nul_output", "chaos.dag", 2, "fail", ("a", "b", "e"), POISON_CAUSE),
    Fault("nul_raise", "chaos.dag", 1.5, "fail", ("a", "b", "e"), r"chaos poison #\d+"),
    Fault("surrogate_output", "chaos.dag", 1.5, "fail", ("e",), POISON_CAUSE),
    Fault("surrogate_nested", "chaos.dag", 1, "fail", ("a", "b", "e"), POISON_CAUSE),
    Fault("surrogate_raise", "chaos.dag", 1, "fail", ("a", "b", "e"), r"chaos poison #\d+"),
    Fault("nan_output", "chaos.dag", 1.5, "either", ("a", "b", "e"), POISON_CAUSE),
    Fault("deep_output", "chaos.dag", 1, "either", ("a", "b", "e"), POISON_CAUSE),
    Fault("too_deep_output", "chaos.dag", 1, "fail", ("a", "b", "e"), POISON_CAUSE),
    Fault("big_output", "chaos.dag", 0.5, "either", ("a", "b", "e"), POISON_CAUSE),
    Fault("when_ok", "chaos.when", 5, "ok", ("",), blob="small"),
    Fault("when_blob", "chaos.when", 2, "fail", ("b",), r"(?i)when|rule|limit|cat", blob="big"),
    Fault("when_list", "chaos.when", 2, "fail", ("c",), r"(?i)when|rule|limit|cat"),
    Fault("when_single_ok", "chaos.when_single", 2, "ok", ("",), blob="small"),
    Fault("when_single_blob", "chaos.when_single", 1.5, "fail", ("s",), r"(?i)when|rule|limit|cat", blob="big"),
    Fault("template_missing", "chaos.template", 2, "fail", ("b",), r"event\.payload\.missing"),
    Fault("secret_missing", "chaos.secret_missing", 2, "fail", ("s",), r"CHAOS_NOPE"),
    Fault("secret_flaky", "chaos.secret", 4, "either", ("b",), r"chaos vault"),
    Fault("park_ok", "chaos.park", 3, "ok", ("a",)),
    Fault("park_fail", "chaos.park", 1.5, "fail", ("a",), r"chaos upstream refused #\d+"),
]
PRIMARY = {
    "chaos.dag": "dag",
    "direct": "dag",
    "chaos.when": "guarded",
    "chaos.when_single": "guarded-single",
    "chaos.template": "templated",
    "chaos.secret": "secrets",
    "chaos.secret_missing": "secret-missing",
    "chaos.park": "parking",
}
BIG_BLOB = "x" * 600_000  # cat of it twice: 1.2 M characters, over the rules' max_value_size (1 M)


@dataclasses.dataclass
class Planned:
    fault: Fault
    payload: dict[str, Any]
    event_id: str = ""
    run_id: str = ""  # direct runs

    def expected_workflows(self) -> set[str]:
        wanted = {PRIMARY[self.fault.event_type]}
        if self.fault.event_type != "direct" and self.payload["audit"]:
            wanted.add("audit")
        if self.fault.event_type == "chaos.when" and self.fault.blob != "big":
            wanted.add("trigger-raise")
        return wanted


def plan_jobs(rng: random.Random, n: int) -> list[Planned]:
    weights = [f.weight for f in FAULTS]
    planned = []
    for i in range(n):
        fault = rng.choices(FAULTS, weights)[0]
        payload = {
            "fault": fault.name.removeprefix("direct_"),
            "at": rng.choice(fault.at),
            "n": i,
            "sleep": rng.choice([0, 0, 0.02, 0.1, 0.3]),
            "audit": rng.random() < 0.25,
            "blob": BIG_BLOB if fault.blob == "big" else fault.blob,
        }
        planned.append(Planned(fault, payload))
    return planned


# ---------------------------------------------------------------------------------------------------
# Worker processes


class Worker:
    """One ``python -m automate.aio`` subprocess and what happened to it."""

    def __init__(self, conninfo: str, log_dir: Path, index: int, grace: float, concurrency: int) -> None:
        self.index = index
        self.grace = grace
        self.log_path = log_dir / f"worker-{index}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        env = {
            **os.environ,
            "AUTOMATE_TEST_WORKER_DATABASE_URL": conninfo,
            "DJANGO_SETTINGS_MODULE": "tests.chaos_settings",
            "PYTHONPATH": str(ROOT),
            "AUTOMATE_CHAOS_SEED": str(SEED),
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "automate.aio",
                "--settings",
                "tests.chaos_settings",
                "--lease-seconds",
                str(LEASE_SECONDS),
                "--poll-interval",
                "0.5",
                "--grace",
                str(grace),
                "--concurrency",
                str(concurrency),
                "--batch-size",
                "10",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid
        self.started = time.time()
        self.ready_at: float | None = None  # when its banner was seen
        self.signal: str | None = None  # "TERM" | "KILL" sent by the test
        self.signal_at: float | None = None
        self.exit_at: float | None = None
        self.returncode: int | None = None
        self.unexpected = False  # exited without being signalled

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.output.splitlines()[-lines:])

    def poll(self) -> bool:
        """Whether it has exited (and note when)."""
        if self.returncode is None and self.proc.poll() is not None:
            self.returncode, self.exit_at = self.proc.returncode, time.time()
        return self.returncode is not None

    def check_ready(self) -> bool:
        if self.ready_at is None and "automate-aio-worker" in self.output:
            self.ready_at = time.time()
        # The banner is printed just before the event loop installs its signal handlers: wait a little
        # more before sending SIGTERM, which would otherwise kill it with the default action.
        return self.ready_at is not None and time.time() - self.ready_at > 1.5

    def send(self, kind: str) -> None:
        self.signal, self.signal_at = kind, time.time()
        self.proc.send_signal(signal.SIGKILL if kind == "KILL" else signal.SIGTERM)
        if kind == "KILL":
            self.proc.wait(30)
            self.poll()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.poll()
        self._log.close()

    def describe(self) -> str:
        return f"worker#{self.index} pid={self.pid} grace={self.grace} signal={self.signal} rc={self.returncode}"


class Chaos:
    """Keeps two workers running; at random intervals terminates a connection, SIGTERMs or SIGKILLs one."""

    def __init__(self, conninfo: str, log_dir: Path, rng: random.Random, actions: int, max_signals: int) -> None:
        self.conninfo = conninfo
        self.log_dir = log_dir
        self.rng = rng
        self.workers: list[Worker] = []
        self.active: list[Worker] = []
        self.injecting = threading.Event()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.events: list[tuple[float, str]] = []
        self.max_signals = max_signals
        self.kills = self.terms = self.conn_kills = 0
        # At least one of each, in a seeded order, then random choices.
        self.schedule = ["KILL", "KILL", "TERM", "TERM", "CONN", "CONN"] + ["?"] * max(0, actions - 6)
        self.rng.shuffle(self.schedule)
        self.thread = threading.Thread(target=self._main, name="chaos", daemon=True)

    def spawn(self, grace: float | None = None) -> Worker:
        """A new worker. Grace 0.3 s: a SIGTERM cancels and releases its in-flight jobs; 10 s: they finish."""
        w = Worker(
            self.conninfo,
            self.log_dir,
            len(self.workers),
            grace=grace if grace is not None else self.rng.choice([0.3, 10.0]),
            concurrency=self.rng.choice([20, 50]),
        )
        self.workers.append(w)
        self.active.append(w)
        return w

    def start(self) -> None:
        self.spawn(grace=0.3)
        self.spawn(grace=10.0)
        self.thread.start()

    def note(self, what: str) -> None:
        self.events.append((time.time(), what))

    def _main(self) -> None:
        try:
            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                next_at = time.monotonic() + 1.0
                while not self.stopping.is_set():
                    self._watch()
                    if self.injecting.is_set() and time.monotonic() >= next_at and self.schedule:
                        self._act(conn, self.schedule.pop(0))
                        next_at = time.monotonic() + self.rng.uniform(0.2, self.interval)
                    time.sleep(0.05)
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    interval = 1.5

    def _watch(self) -> None:
        for w in list(self.active):
            w.check_ready()
            if w.poll():  # exited although nobody signalled it
                w.unexpected = True
                self.active.remove(w)
                self.note(f"{w.describe()} exited on its own")
                self.spawn()

    def _act(self, conn: psycopg.Connection[Any], kind: str) -> None:
        ready = [w for w in self.active if w.check_ready()]
        if kind == "?":
            kind = self.rng.choices(["CONN", "TERM", "KILL"], [0.6, 0.2, 0.2])[0]
        if kind in ("TERM", "KILL") and (
            not ready
            or self.kills + self.terms >= 2 * self.max_signals
            or (self.kills if kind == "KILL" else self.terms) >= self.max_signals
        ):
            kind = "CONN"
        if kind == "CONN":
            rows = conn.execute(
                "SELECT pid, application_name FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = ANY(%s) ORDER BY pid",
                [list(WORKER_APPS)],
            ).fetchall()
            if rows:
                pid, app = self.rng.choice(rows)
                conn.execute("SELECT pg_terminate_backend(%s)", [pid])
                self.conn_kills += 1
                self.note(f"pg_terminate_backend({pid}) {app}")
            return
        if kind == "TERM" and self.terms % 2 == 0 and any(w.grace < 1 for w in ready):
            ready = [w for w in ready if w.grace < 1]  # every other SIGTERM: in-flight work is cancelled
        w = self.rng.choice(ready)
        self.active.remove(w)
        w.send(kind)
        if kind == "KILL":
            self.kills += 1
        else:
            self.terms += 1
        self.note(f"SIG{kind} {w.describe()}")
        self.spawn()

    def stop(self) -> None:
        self.injecting.clear()
        self.stopping.set()
        self.thread.join(60)

    def shutdown(self, timeout: float = 60) -> None:
        """SIGTERM every worker still running and wait for all of them."""
        for w in self.active:
            w.send("TERM")
        deadline = time.monotonic() + timeout
        for w in self.workers:
            while not w.poll() and time.monotonic() < deadline:
                time.sleep(0.05)

    def close(self) -> None:
        self.stopping.set()
        for w in self.workers:
            w.close()


# ---------------------------------------------------------------------------------------------------
# Side effects


@dataclasses.dataclass
class Execution:
    key: str  # "<run id>:<step id>"
    attempt: int
    pid: int
    start: float
    end: float | None = None
    outcome: str | None = None  # ok | err | cancel | None (never ended)


def read_executions(path: Path) -> dict[str, list[Execution]]:
    by_token: dict[str, Execution] = {}
    ends: dict[str, tuple[str, float]] = {}
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split()
            if parts and parts[0] == "S" and len(parts) == 6:
                by_token[parts[1]] = Execution(parts[2], int(parts[3]), int(parts[4]), float(parts[5]))
            elif parts and parts[0] == "E" and len(parts) == 4:
                ends[parts[1]] = (parts[2], float(parts[3]))
    out: dict[str, list[Execution]] = collections.defaultdict(list)
    for token, ex in by_token.items():
        if token in ends:
            ex.outcome, ex.end = ends[token]
        out[ex.key].append(ex)
    return out


def explained(ex: Execution, workers: dict[int, Worker]) -> bool:
    """Whether an extra execution of a step that succeeded is allowed: its worker was SIGKILLed (or died)
    while it was in flight or not yet recorded, or was SIGTERMed and the step was still running when the
    grace period ran out (a thread cannot be cancelled)."""
    w = workers.get(ex.pid)
    if w is None:
        return False
    if w.signal == "KILL" or w.unexpected:
        killed_at = w.signal_at if w.signal == "KILL" else w.exit_at
        assert killed_at is not None
        return ex.start < killed_at and (ex.end is None or ex.end > killed_at - KILL_WINDOW)
    if w.signal == "TERM" and w.signal_at is not None:
        exit_at = w.exit_at or time.time()
        return ex.start < exit_at and (ex.end is None or ex.end >= w.signal_at + w.grace - 0.5)
    return False


# ---------------------------------------------------------------------------------------------------
# The test


def _scalar(conn: psycopg.Connection[Any], sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def test_chaos(pg_conninfo: str, tmp_path: Path) -> None:
    print(f"chaos seed={SEED} jobs={JOBS}")
    tag = f"[chaos seed={SEED} jobs={JOBS}]"
    rng = random.Random(SEED)
    chaos_rng = random.Random(SEED + 1)
    marks = tmp_path / "executions"
    publish_workflows(str(marks))
    planned = plan_jobs(rng, JOBS)
    emit_seconds = max(15.0, JOBS / 50)  # the pace of emission; chaos lasts as long
    actions = max(8, int(emit_seconds / 0.9))
    max_signals = max(2, JOBS // 150)
    chaos = Chaos(pg_conninfo, tmp_path, chaos_rng, actions, max_signals)
    chaos.interval = max(0.3, 2 * emit_seconds / actions - 0.2)
    problems: list[tuple[str, str]] = []

    def problem(kind: str, text: str) -> None:
        problems.append((kind, text))

    t0 = time.monotonic()
    try:
        chaos.start()
        deadline = time.monotonic() + 60
        while not all(w.check_ready() for w in chaos.active):
            assert time.monotonic() < deadline, f"{tag} workers never started:\n" + "\n".join(
                w.tail() for w in chaos.workers
            )
            assert chaos.error is None, f"{tag} chaos thread: {chaos.error!r}"
            time.sleep(0.05)
        chaos.injecting.set()

        # Emit in bursts, paced to last about emit_seconds.
        start = time.monotonic()
        i = 0
        while i < len(planned):
            for p in planned[i : i + rng.randint(1, 30)]:
                if p.fault.event_type == "direct":
                    p.run_id = run_workflow("dag", p.payload)
                else:
                    p.event_id = emit_event(p.fault.event_type, p.payload)
                i += 1
            lag = start + emit_seconds * i / len(planned) - time.monotonic()
            if lag > 0:
                time.sleep(lag)
            assert chaos.error is None, f"{tag} chaos thread: {chaos.error!r}"
        emitted_s = time.monotonic() - t0
        # Let the chaos go on a little after the last event, then stop injecting; keep replacing workers
        # that die on their own while the outbox drains.
        wait = time.monotonic() + 3
        while chaos.schedule and time.monotonic() < wait:
            time.sleep(0.1)
        chaos.injecting.clear()

        with psycopg.connect(pg_conninfo, autocommit=True) as conn:
            last, last_change = None, time.monotonic()
            while True:
                left = _scalar(conn, "SELECT count(*) FROM automate_outbox_job WHERE status IN ('PENDING', 'CLAIMED')")
                if left == 0:
                    break
                if left != last:
                    last, last_change = left, time.monotonic()
                if time.monotonic() - last_change > STALL_SECONDS:
                    problem(
                        "outbox not drained",
                        f"outbox never drained: {left} jobs still PENDING/CLAIMED after no progress "
                        f"for {STALL_SECONDS:.0f}s",
                    )
                    break
                assert chaos.error is None, f"{tag} chaos thread: {chaos.error!r}"
                time.sleep(0.2)
        drained_s = time.monotonic() - t0
        chaos.stop()
        assert chaos.error is None, f"{tag} chaos thread: {chaos.error!r}"
        chaos.shutdown()
    finally:
        chaos.close()
    total_s = time.monotonic() - t0

    # -- the workers ---------------------------------------------------------------------------------
    for w in chaos.workers:
        if w.unexpected:
            problem("worker died on its own", f"worker died on its own: {w.describe()}; log tail:\n{w.tail()}")
        elif w.signal == "TERM" and w.returncode != 0:
            problem(
                "worker exit after SIGTERM",
                f"worker did not exit 0 after SIGTERM: {w.describe()}; log tail:\n{w.tail()}",
            )
        elif w.signal is None:
            problem("worker never stopped", f"worker was never stopped: {w.describe()}")
    by_pid = {w.pid: w for w in chaos.workers}

    with psycopg.connect(pg_conninfo, autocommit=True) as conn:
        jobs = {
            r[0]: r
            for r in conn.execute(
                "SELECT event_id::text, id, kind, status, attempts, max_attempts, last_error, run_id::text "
                "FROM automate_outbox_job"
            ).fetchall()
        }
        runs_by_event: dict[str, list[tuple[Any, ...]]] = collections.defaultdict(list)
        for r in conn.execute(
            "SELECT r.event_id::text, r.id::text, w.slug, r.status, r.error FROM automate_execution_run r "
            "JOIN automate_workflow_version v ON v.id = r.workflow_version_id "
            "JOIN automate_workflow w ON w.id = v.workflow_id"
        ).fetchall():
            runs_by_event[r[0]].append(r)
        dup_runs = conn.execute(
            "SELECT event_id, workflow_version_id, count(*) FROM automate_execution_run "
            "GROUP BY 1, 2 HAVING count(*) > 1"
        ).fetchall()
        succeeded_steps = {
            f"{r[0]}:{r[1]}"
            for r in conn.execute(
                "SELECT DISTINCT run_id::text, step_id FROM automate_step_run WHERE status = 'SUCCEEDED'"
            ).fetchall()
        }
        last_steps = conn.execute(
            "SELECT DISTINCT ON (s.run_id, s.step_id) s.run_id::text, s.step_id, s.status FROM automate_step_run s "
            "JOIN automate_execution_run r ON r.id = s.run_id WHERE r.status = 'SUCCEEDED' "
            "ORDER BY s.run_id, s.step_id, s.attempt DESC"
        ).fetchall()
        leaks = _scalar(
            conn,
            f"""
            SELECT (SELECT count(*) FROM automate_step_run WHERE output::text LIKE '%{TOKEN}%'
                                                              OR error LIKE '%{TOKEN}%')
                 + (SELECT count(*) FROM automate_execution_run WHERE outputs::text LIKE '%{TOKEN}%'
                                                                   OR error LIKE '%{TOKEN}%')
                 + (SELECT count(*) FROM automate_outbox_job WHERE last_error LIKE '%{TOKEN}%')""",
        )
        stored_nan = conn.execute(
            "SELECT s.output FROM automate_step_run s JOIN automate_execution_run r ON r.id = s.run_id "
            "JOIN automate_event e ON e.id = r.event_id "
            "WHERE e.payload->>'fault' = 'nan_output' AND s.status = 'SUCCEEDED' "
            "AND s.step_id = e.payload->>'at' LIMIT 1"
        ).fetchall()

    for p in planned:
        if p.run_id:
            p.event_id = next((e for e, j in jobs.items() if j[7] == p.run_id), "")
    assert all(p.event_id for p in planned), f"{tag} an emitted job is missing from the outbox"
    assert len(jobs) == len(planned), f"{tag} {len(jobs)} jobs for {len(planned)} events"

    # -- invariants over every job -------------------------------------------------------------------
    generic = re.compile(r"^\s*(ExceptionGroup: )?unhandled errors in a TaskGroup( \(\d+ sub-exceptions?\))?\s*$")
    dead_letters: list[str] = []
    for p in planned:
        _eid, job_id, _kind, status, attempts, max_attempts, last_error, _rid = jobs[p.event_id]
        runs = runs_by_event.get(p.event_id, [])
        what = f"job {job_id} ({p.fault.name} at {p.payload['at']!r}, n={p.payload['n']}, attempts={attempts})"
        if status not in ("COMPLETED", "FAILED"):
            problem(
                "job not final",
                f"{what}: job ended {status}; last_error={last_error[:300]!r}; runs={[(r[2], r[3]) for r in runs]}",
            )
            continue
        for _e, run_id, slug, run_status, error in runs:
            if run_status not in ("SUCCEEDED", "FAILED", "CANCELLED"):
                problem("run not final", f"{what}: job {status} but run {run_id} of {slug} left {run_status}")
            if run_status == "FAILED" and (not error.strip() or generic.match(error)):
                problem(
                    "run error names no cause",
                    f"{what}: run {run_id} of {slug} FAILED with an error naming no cause: {error!r}",
                )
        if status == "COMPLETED":
            bad = [(r[2], r[3]) for r in runs if r[3] != "SUCCEEDED"]
            if bad:
                problem("COMPLETED job with a non-SUCCEEDED run", f"{what}: job COMPLETED but runs {bad}")
            got = {r[2] for r in runs}
            if got != p.expected_workflows():
                problem(
                    "COMPLETED job with wrong set of runs",
                    f"{what}: job COMPLETED with runs of {sorted(got)}, expected {sorted(p.expected_workflows())}",
                )
        else:
            if not last_error.strip() or generic.match(last_error):
                problem(
                    "job last_error names no cause",
                    f"{what}: job FAILED with a last_error naming no cause: {last_error!r}",
                )
            if runs and not any(r[3] == "FAILED" for r in runs) and "lease expired" not in last_error:
                problem(
                    "FAILED job without a FAILED run",
                    f"{what}: job FAILED but none of its runs did: {[(r[2], r[3]) for r in runs]}; "
                    f"last_error={last_error[:300]!r}",
                )
        if status == "FAILED" and "lease expired" in last_error:
            dead_letters.append(what)

        # -- the outcome this fault should have --------------------------------------------------
        if status == "FAILED" and "lease expired" in last_error and attempts >= max_attempts:
            continue  # dead-lettered after repeated crashes/kills while in flight: accounted for below
        primary = [r for r in runs if r[2] == PRIMARY[p.fault.event_type]]
        f = p.fault
        if f.outcome == "ok" and status != "COMPLETED":
            problem("expected COMPLETED", f"{what}: expected COMPLETED, got {status}: {last_error[:400]!r}")
        elif f.outcome == "fail" and status != "FAILED":
            problem("expected FAILED", f"{what}: expected FAILED, got {status}; runs={[(r[2], r[3]) for r in runs]}")
        if status == "FAILED" and f.outcome != "ok":
            step = p.payload["at"]
            if not primary or primary[0][3] != "FAILED":
                problem(
                    "expected primary run FAILED",
                    f"{what}: expected its {PRIMARY[f.event_type]} run FAILED, runs="
                    f"{[(r[2], r[3]) for r in runs]}; last_error={last_error[:300]!r}",
                )
            for label, text in (("run error", primary[0][4] if primary else None), ("job last_error", last_error)):
                if text is None:
                    continue
                if f"'{step}'" not in text:
                    problem(
                        "error does not name the step", f"{what}: {label} does not name step {step!r}: {text[:400]!r}"
                    )
                elif not re.search(f.cause, text):
                    problem(
                        "error does not name the cause",
                        f"{what}: {label} does not name the cause (/{f.cause}/): {text[:400]!r}",
                    )

    if dup_runs:
        problem("duplicate runs", f"(event, version) pairs with more than one run: {dup_runs[:10]}")
    for run_id, step_id, st in last_steps:
        if st not in ("SUCCEEDED", "SKIPPED"):
            problem("SUCCEEDED run with unfinished step", f"run {run_id} SUCCEEDED but its step {step_id!r} ended {st}")
    if leaks:
        problem("secret leaked", f"the value of $secret:CHAOS_TOKEN was stored unredacted in {leaks} rows")

    # -- no step that succeeded ran twice, except around a SIGKILL -----------------------------------
    executions = read_executions(marks)
    double_runs = []
    reexecuted = 0  # succeeded steps that ran again because a kill or a shutdown caught them in flight
    for key in succeeded_steps:
        effective = [x for x in executions.get(key, []) if x.outcome in ("ok", None)]
        reexecuted += len(effective) > 1
        if len(effective) > 1 and sum(1 for x in effective if not explained(x, by_pid)) > 1:
            double_runs.append(
                f"{key}: "
                + ", ".join(
                    f"attempt {x.attempt} pid {x.pid} {x.outcome} {x.start:.3f}-{x.end or 0:.3f}" for x in effective
                )
            )
    if double_runs:
        problem(
            "step ran twice",
            f"{len(double_runs)} succeeded steps ran more than once without a kill in flight, e.g.:\n  "
            + "\n  ".join(sorted(double_runs)[:10]),
        )
    unfinished = [x for xs in executions.values() for x in xs if x.outcome is None and not explained(x, by_pid)]
    if unfinished:
        problem(
            "execution never ended",
            f"{len(unfinished)} step executions never ended on a worker that was not killed, e.g. {unfinished[:3]}",
        )

    # -- summary -----------------------------------------------------------------------------------
    outcomes = collections.Counter((p.fault.name, jobs[p.event_id][3]) for p in planned)
    tracebacks = sum(w.output.count("Traceback") for w in chaos.workers)
    summary = (
        f"{tag} emitted in {emitted_s:.1f}s, drained at {drained_s:.1f}s, total {total_s:.1f}s; "
        f"workers started={len(chaos.workers)} SIGKILL={chaos.kills} SIGTERM={chaos.terms} "
        f"pg_terminate_backend={chaos.conn_kills} died_on_their_own={sum(w.unexpected for w in chaos.workers)}; "
        f"dead letters (lease expired)={len(dead_letters)}; steps re-run after a kill={reexecuted}; "
        f"executions={sum(map(len, executions.values()))}; tracebacks in worker logs={tracebacks}; "
        f"nan stored as {stored_nan[0][0] if stored_nan else 'n/a'}\n"
        + "  outcomes: "
        + ", ".join(f"{k[0]}:{k[1]}={v}" for k, v in sorted(outcomes.items()))
    )
    print(summary)
    for at, what in chaos.events:
        print(f"  chaos {at - chaos.workers[0].started:7.2f}s {what}")
    if problems:
        by_kind: dict[str, list[str]] = collections.defaultdict(list)
        for kind, text in problems:
            by_kind[kind].append(text)
        report = "\n".join(
            f"{kind} ({len(texts)}):\n" + "\n".join(f"  - {t}" for t in texts[:6]) for kind, texts in by_kind.items()
        )
        counts = ", ".join(f"{kind}={len(texts)}" for kind, texts in by_kind.items())
        pytest.fail(f"{tag} {len(problems)} problems: {counts}\n{report}\n{summary}", pytrace=False)

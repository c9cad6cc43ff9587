"""emit_event() throughput against plain INSERT transactions, measured in the same run on the same server.

    python benchmarks/bench_emit.py [--seconds 1.5] [--rounds 6] [--clients 1,16] [--diagnose] [--quick]

One event is an ``automate_event`` row and its ``automate_outbox_job`` row (the CTE of
``automate.queries.EMIT_EVENT``), one event per transaction. Modes (benchmarks/README.md has the table):
``plain``, the baseline: the CTE from a raw psycopg connection with psycopg's defaults (server-side
binding, prepared after five runs, as emit_event prepares its own) in autocommit, one round trip, no
NOTIFY; ``naive_notify``: the CTE and a NOTIFY pipelined as one implicit transaction (one round trip);
``automate``: ``emit_event()`` from sync Django in autocommit. ``--diagnose`` adds ``plain_unprepared``
(client-side binding: the CTE parsed and planned every time; this benchmark's baseline before),
``plain_one_row`` (the event row alone), ``plain_tx`` (BEGIN, CTE, COMMIT) and ``automate_no_notify``.

Each client is its own spawned process (threads would measure the GIL), reused for every mode; all
clients of a run start at the same instant, right after a few warm-up events (so a run starts in the
state of a process that has been emitting all along), and count completed transactions for a fixed
time. Every other mode's run sits between two ``plain`` runs (plain, A, plain, B, plain; the order of
the others rotates each round) and its ratio is taken against their mean, so drift on a shared machine
cancels out of each ratio; the headline is the median over rounds. Tables are truncated and checkpointed
before every run; a LISTEN connection is attached and drained throughout, as a worker would be. Targets:
automate >= 60% of plain at 1 client, >= 80% at 16. Results: ``benchmarks/results/emit.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import sys
import threading
import time
import traceback
import uuid
from multiprocessing.connection import Connection
from typing import Any

import _common as common
import psycopg

MODES = ("plain", "naive_notify", "automate")
# --diagnose adds modes that split automate's cost (see the module docstring).
DIAGNOSTIC_MODES = ("plain_unprepared", "plain_one_row", "plain_tx", "automate_no_notify")
TARGETS = {1: 0.60, 16: 0.80}  # automate / plain, from the issue
EVENT_TYPE = "bench.order_created"
# More than psycopg's prepare_threshold (5): the baseline's statement is prepared before the clock starts.
WARMUP_OPS = 8
START_MARGIN = 0.2  # seconds between sending a run to the clients and its common start instant
# The warm-up runs this long before the start instant: sooner than the notifier's idle close (0.5 s), so
# no run starts with a notifier that a steadily emitting process would not have closed.
WARMUP_LEAD = 0.1
# plain_one_row: the event row alone, the statement EMIT_EVENT starts with.
EVENT_ONLY = """
INSERT INTO automate_event (id, type, payload, source, dedupe_key, traceparent, tracestate, created_at)
VALUES (%(id)s, %(type)s, %(payload)s::jsonb, %(source)s, %(dedupe_key)s, %(traceparent)s, %(tracestate)s, now())
"""


# --- the client processes ------------------------------------------------------------------------


def _client_main(pipe: Connection, db_url: str) -> None:
    """One emitting client: waits for (mode, start_at, end_at), runs, sends back (count, elapsed)."""
    try:
        os.environ["BENCH_DB_URL"] = db_url
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench_settings"
        import django

        django.setup()
        import orjson
        from django.db import connection
        from django.test import override_settings

        from automate import queries
        from automate.conf import get_settings
        from automate.runtime import emit_event

        max_attempts = get_settings().EXECUTION.max_retries + 1
        # psycopg's defaults: server-side binding, statements prepared after their fifth run.
        raw = psycopg.connect(db_url, autocommit=True)
        cur = raw.cursor()
        client_cur = psycopg.ClientCursor(raw)  # client-side binding: never prepared (Django's default)
        emit_sql = queries.EMIT_EVENT
        seq = 0

        def payload() -> dict[str, Any]:
            nonlocal seq
            seq += 1
            return {"order": {"id": seq, "total": 120, "currency": "EUR"}, "customer": {"id": os.getpid()}}

        def raw_params() -> dict[str, Any]:
            # What emit_event does besides the SQL: a UUID and the JSON encoding of the payload.
            return {
                "id": uuid.uuid4(),
                "type": EVENT_TYPE,
                "payload": orjson.dumps(payload()).decode(),
                "source": "",
                "dedupe_key": None,
                "traceparent": "",
                "tracestate": "",
                "max_attempts": max_attempts,
            }

        def plain() -> None:
            cur.execute(emit_sql, raw_params())

        def plain_unprepared() -> None:
            client_cur.execute(emit_sql, raw_params())

        def plain_one_row() -> None:
            cur.execute(EVENT_ONLY, raw_params())

        def naive() -> None:
            # Pipelined up to one Sync: the CTE and the NOTIFY run as one implicit transaction, one round trip.
            with raw.pipeline():
                cur.execute(emit_sql, raw_params())
                cur.execute(queries.NOTIFY_OUTBOX)

        def plain_tx() -> None:
            with raw.transaction():  # BEGIN, the CTE, COMMIT: three round trips, as Django's atomic
                cur.execute(emit_sql, raw_params())

        def automate() -> None:
            emit_event(EVENT_TYPE, payload())

        ops = {"plain": plain, "naive_notify": naive, "automate": automate, "plain_unprepared": plain_unprepared,
               "plain_one_row": plain_one_row, "plain_tx": plain_tx, "automate_no_notify": automate}
        connection.ensure_connection()
        pipe.send(("ready", os.getpid()))
        while True:
            msg = pipe.recv()
            if msg is None:
                break
            mode, start_at, end_at = msg
            op = ops[mode]
            quiet = override_settings(DJANGO_AUTOMATE={"EVENTS": {"notify": "off"}})
            with quiet if mode == "automate_no_notify" else contextlib.nullcontext():
                delay = start_at - WARMUP_LEAD - time.time()
                if delay > 0:
                    time.sleep(delay)
                for _ in range(WARMUP_OPS):
                    op()
                delay = start_at - time.time()
                if delay > 0:
                    time.sleep(delay)
                began = max(start_at, time.time())  # (a client whose warm-up overran starts late)
                count = 0
                while True:
                    op()
                    count += 1
                    now = time.time()
                    if now >= end_at:
                        break
            pipe.send(("done", count, now - began))
        raw.close()
        connection.close()
    except BaseException:
        pipe.send(("error", traceback.format_exc()))
        raise


class ClientPool:
    """N spawned client processes, reused across modes and rounds."""

    def __init__(self, n: int, db_url: str) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        try:
            for _ in range(n):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_client_main, args=(child, db_url), daemon=True)
                proc.start()
                child.close()
                self.pipes.append(parent)
                self.procs.append(proc)
            for pipe in self.pipes:
                self._expect(pipe, "ready", timeout=180)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _expect(pipe: Connection, kind: str, timeout: float) -> tuple[Any, ...]:
        if not pipe.poll(timeout):
            raise RuntimeError(f"a client process did not answer within {timeout}s")
        msg = pipe.recv()
        if msg[0] == "error":
            raise RuntimeError(f"a client process failed:\n{msg[1]}")
        if msg[0] != kind:
            raise RuntimeError(f"unexpected message from a client: {msg!r}")
        return tuple(msg)

    def run(self, mode: str, seconds: float) -> tuple[float, int]:
        """All clients run ``mode`` for ``seconds`` from a common start; returns (events/s, events)."""
        start_at = time.time() + START_MARGIN + 0.02 * len(self.pipes)
        end_at = start_at + seconds
        for pipe in self.pipes:
            pipe.send((mode, start_at, end_at))
        rate = 0.0
        total = 0
        for pipe in self.pipes:
            _, count, elapsed = self._expect(pipe, "done", timeout=seconds + 120)
            rate += count / elapsed
            total += count
        return rate, total

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(BrokenPipeError, OSError):
                pipe.send(None)
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        for pipe in self.pipes:
            pipe.close()
        self.pipes, self.procs = [], []


# --- the listener, the reset ---------------------------------------------------------------------


class Listener:
    """A LISTEN automate_outbox connection, drained by a thread (as a worker's listener would be)."""

    def __init__(self, db_url: str) -> None:
        self.conn = psycopg.connect(db_url, autocommit=True)
        self.conn.execute("LISTEN automate_outbox")
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for _ in self.conn.notifies(timeout=0.2):
                self.count += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.conn.close()


def reset_tables(db_url: str) -> None:
    """Empty the tables (every run starts from the same state) and checkpoint if allowed."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE automate_outbox_job, automate_event CASCADE")
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")


def count_events(db_url: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM automate_event").fetchone()
    return int(row[0]) if row else 0


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=None, help="duration of each run (default 1.5)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of every mode, interleaved (default 6)")
    parser.add_argument("--clients", default="1,16", help="comma-separated client counts (default 1,16)")
    parser.add_argument("--diagnose", action="store_true",
                        help="also run " + ", ".join(DIAGNOSTIC_MODES) + " (see the module docstring)")
    parser.add_argument("--no-listener", action="store_true",
                        help="do not keep a LISTEN connection attached (only to diagnose the listener's cost)")
    parser.add_argument("--quick", action="store_true", help="a fast sanity run (default --seconds 1 --rounds 1)")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 1.0 if args.quick else 1.5
    if args.rounds is None:
        args.rounds = 1 if args.quick else 6
    args.modes = MODES + (DIAGNOSTIC_MODES if args.diagnose else ())
    args.client_counts = [int(c) for c in str(args.clients).split(",") if c.strip()]
    if not args.client_counts or min(args.client_counts) < 1:
        parser.error("--clients needs positive integers, e.g. 1,16")
    return args


def round_schedule(modes: tuple[str, ...], rnd: int) -> list[str]:
    """One round: every mode but plain, in an order rotated by the round, each between two plain runs."""
    others = [m for m in modes if m != "plain"]
    shift = rnd % len(others) if others else 0
    schedule = ["plain"]
    for mode in others[shift:] + others[:shift]:
        schedule += [mode, "plain"]
    return schedule


def paired_ratio(runs: list[dict[str, Any]], i: int) -> float | None:
    """runs[i] against the mean of the plain runs just before and after it (same clients and round)."""
    plain = [runs[j]["events_per_s"] for j in (i - 1, i + 1)
             if 0 <= j < len(runs) and runs[j]["mode"] == "plain"
             and runs[j]["clients"] == runs[i]["clients"] and runs[j]["round"] == runs[i]["round"]]
    return common.ratio(runs[i]["events_per_s"], sum(plain) / len(plain)) if plain else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    runs: list[dict[str, Any]] = []
    with common.postgres_server() as admin_url:
        db_name = "bench_emit"
        db_url = common.fresh_database(admin_url, db_name)
        try:
            common.migrate_automate(db_url)
            server = common.server_info(db_url)
            commit_before = common.commit_latency_ms(db_url)
            listener = None if args.no_listener else Listener(db_url)
            try:
                for clients in args.client_counts:
                    pool = ClientPool(clients, db_url)
                    try:
                        for rnd in range(args.rounds):
                            for slot, mode in enumerate(round_schedule(args.modes, rnd)):
                                reset_tables(db_url)
                                notified = listener.count if listener else 0
                                rate, events = pool.run(mode, args.seconds)
                                rows = count_events(db_url)
                                time.sleep(0.2)  # let the last notifications arrive before counting
                                runs.append({
                                    "clients": clients, "round": rnd, "slot": slot, "mode": mode,
                                    "events_per_s": round(rate, 1), "events": events,
                                    "rows_written": rows,
                                    "notifications": (listener.count - notified) if listener else None,
                                })
                                print(f"  clients={clients:<3} round={rnd} {mode:<18} {rate:9,.0f} events/s",
                                      file=sys.stderr)
                    finally:
                        pool.close()
            finally:
                if listener:
                    listener.close()
            commit_after = common.commit_latency_ms(db_url)
        finally:
            common.drop_database(admin_url, db_name)

    others = [m for m in args.modes if m != "plain"]
    summary: dict[str, dict[str, float]] = {}
    for clients in args.client_counts:
        summary[str(clients)] = {
            mode: round(common.median([r["events_per_s"] for r in runs
                                       if r["clients"] == clients and r["mode"] == mode]), 1)
            for mode in args.modes
        }
    ratios: dict[str, dict[str, Any]] = {}
    for clients in args.client_counts:
        med = summary[str(clients)]
        paired = {
            mode: [round(paired_ratio(runs, i) or 0.0, 3) for i, r in enumerate(runs)
                   if r["clients"] == clients and r["mode"] == mode]
            for mode in others
        }
        # The headline: the median over rounds of each run's ratio to the plain runs on either side of it
        # (seconds apart, under the same load), sturdier against drift than the ratio of the medians.
        ratios[str(clients)] = {f"{mode}_vs_plain": round(common.median(paired[mode]), 3) for mode in others}
        ratios[str(clients)]["ratio_of_medians"] = {
            mode: round(common.ratio(med[mode], med["plain"]) or 0.0, 3) for mode in others
        }
        ratios[str(clients)]["per_round"] = paired
        ratios[str(clients)]["notifications_per_event"] = {
            mode: round(common.median([r["notifications"] / r["events"] for r in runs
                                       if r["clients"] == clients and r["mode"] == mode and r["events"]]), 3)
            for mode in args.modes
        } if listener else None
    targets = {
        str(c): {
            "automate_vs_plain_at_least": goal,
            "measured": ratios[str(c)]["automate_vs_plain"],
            "met": ratios[str(c)]["automate_vs_plain"] >= goal,
        }
        for c, goal in TARGETS.items()
        if str(c) in ratios
    }
    result = {
        "benchmark": "emit",
        "what": "events/s writing automate_event + automate_outbox_job, one event per transaction",
        "baseline": "plain: the EMIT_EVENT CTE from a raw psycopg connection in autocommit with psycopg's "
                    "defaults (server-side binding, prepared after 5 runs), no NOTIFY",
        "config": {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "clients": args.client_counts,
            "modes": list(args.modes),
            "processes": "one spawned process per client",
            "listener": None if args.no_listener else "LISTEN automate_outbox",
            "pairing": "every other mode's run between two plain runs, its ratio against their mean",
            "warmup": f"{WARMUP_OPS} events per client, {WARMUP_LEAD}s before the start",
        },
        "server": server,
        "commit_latency": {"before": commit_before, "after": commit_after},
        "machine": common.machine_info(),
        "summary_events_per_s": summary,
        "ratios": ratios,
        "targets": targets,
        "runs": runs,
        "wall_seconds": round(time.perf_counter() - began, 1),
    }
    path = common.write_results("emit", result)

    rows = []
    for clients in args.client_counts:
        med, rat = summary[str(clients)], ratios[str(clients)]
        per_event = rat["notifications_per_event"] or {}
        for mode in args.modes:
            target = f">= {TARGETS[clients]:.0%}" if mode == "automate" and clients in TARGETS else ""
            ratio = "(baseline)" if mode == "plain" else f"{rat[mode + '_vs_plain']:.0%}"
            rows.append([clients, mode, med[mode], ratio, per_event.get(mode, "-"), target])
    common.print_table(
        ["clients", "mode", "events/s", "/ plain", "NOTIFYs per event", "target"],
        rows,
        title=f"emit_event() vs plain INSERT transactions (median of {args.rounds} rounds x {args.seconds:g}s, "
              f"PostgreSQL {server['version']}, fsync={server['fsync']})",
    )
    print(f"one-row commit: p50 {commit_before['p50_ms']:.2f} ms before the runs, "
          f"{commit_after['p50_ms']:.2f} ms after")
    for c, t in targets.items():
        print(f"target at {c} client(s): automate/plain {t['measured']:.0%} "
              f"(>= {t['automate_vs_plain_at_least']:.0%}): {'met' if t['met'] else 'NOT met'}")
    print(f"results: {common.shown(path)}  ({result['wall_seconds']}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The cost of tracing and metrics on automate-aio-worker: ``bench_worker.py --observability`` (or this file).

Each round drains the same no-op events (bench_worker's record path) with one worker in each mode, each in
a fresh database, in an order that rotates every round: ``off`` (no ``OTEL_*``, ``METRICS_EXPORT`` false:
the baseline), ``otlp`` (spans exported over OTLP/HTTP to a receiver in this process that decodes and
counts them), ``metrics`` (``METRICS_EXPORT`` and ``--metrics-port``) and, with ``--base PATH``, ``base``
(the automate package at PATH first on ``PYTHONPATH``, both off). Reported: each mode's throughput as a
share of ``off``, the median of the ratios paired within each round.
Writes ``benchmarks/results/worker_observability.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common
import bench_worker as bw

MODES = ("off", "otlp", "metrics")


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


def observability(admin: str, workdir: Path, n: int, rounds: int, base: str | None, *,
                  modes_wanted: tuple[str, ...] = MODES, conc: int = 1000, batch: int = 500) -> dict[str, Any]:
    """Throughput of the no-op drain with tracing (OTLP) or metrics on, as a ratio to both off."""
    sink = _OtlpSink()
    every: dict[str, dict[str, Any]] = {
        "off": {},
        "otlp": {"env": {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_SERVICE_NAME": "bench-worker"}},
        "metrics": {"env": {"BENCH_AUTOMATE_SETTINGS": json.dumps({**json.loads(bw.SETTINGS),
                                                                   "METRICS_EXPORT": True})},
                    "metrics": True},
    }
    if base:
        every["base"] = {"env": {"PYTHONPATH": f"{base}:{bw._env('', workdir)['PYTHONPATH']}"}}
    # off is the baseline of every ratio: always run.
    modes = {m: v for m, v in every.items() if m == "off" or m in modes_wanted or m == "base"}
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
                db = bw._prepare(admin, name, workdir, bw.NOOP, n)
                spans_before = sink.spans
                args = ("--metrics-port", str(_free_port()), "--metrics-addr", "127.0.0.1") if modes[mode].get(
                    "metrics") else ()
                seconds[mode], _ = bw._drain(db, workdir, 1, conc, batch, modes[mode].get("env"), args)
                counts = bw._counts(db)
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
        "method": f"one worker --concurrency {conc} --batch-size {batch} --loop {bw.WORKER_LOOP} --drain, banner "
        "to exit; ratios paired within each round (off seconds / mode seconds: throughput as a share of off)",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--observability", action="store_true", help=argparse.SUPPRESS)  # bench_worker.py's flag
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="2,000 events, one round")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)} "
                    "(off always runs: it is the baseline)")
    ap.add_argument("--concurrency", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    ap.add_argument("--base", help="also run the worker from the automate package at this path")
    args = ap.parse_args(argv)
    if args.quick:
        args.events, args.rounds = 2_000, 1
    modes = tuple(m for m in args.modes.split(",") if m)
    if bad := set(modes) - set(MODES):
        ap.error(f"unknown modes: {', '.join(sorted(bad))}")
    bw.WORKER_LOOP = args.loop
    results: dict[str, Any] = {"benchmark": "worker_observability", "machine": common.machine_info()}
    with tempfile.TemporaryDirectory() as tmp, common.postgres_server() as admin:
        workdir = Path(tmp)
        bw._steps_module(workdir)
        results["server"] = common.server_info(admin)
        shown = ["off", *(m for m in modes if m != "off")]
        print(f"observability (no-op drain: {', '.join(shown)})", file=sys.stderr)
        results["observability"] = obs = observability(admin, workdir, args.events, args.rounds, args.base,
                                                       modes_wanted=modes, conc=args.concurrency,
                                                       batch=args.batch_size)
    rows = [[mode, f"{common.median(v):,.0f}", "1.00" if mode == "off" else f"{obs['median_ratio_to_off'][mode]:.2f}"]
            for mode, v in obs["per_s"].items()]
    common.print_table(["mode", "events/s (median)", "throughput / off (median of paired ratios)"], rows,
                       title="automate-aio-worker: cost of tracing and metrics")
    path = common.write_results("worker_observability", results)
    print(f"results: {common.shown(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

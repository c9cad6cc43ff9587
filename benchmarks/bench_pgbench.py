"""The physical floor: pgbench's single-row INSERT transactions at 1, 4 and 16 clients, on the same server.

    python benchmarks/bench_pgbench.py [--seconds 5] [--clients 1,4,16]

Each transaction is one autocommit ``INSERT`` of one small row (``-M prepared``, pgbench's fastest
protocol), so the figure is what this server, disk and machine allow for one-commit-per-row writes
before any Python runs: emit_event() (bench_emit.py) writes two rows per commit from Python and is
read against it. Needs the ``pgbench`` program (PostgreSQL's client tools) on ``PATH``; without it the
result says so and the script exits 0. Results in ``benchmarks/results/pgbench.json``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

TABLE = "CREATE TABLE bench_pgbench (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), note text)"
SCRIPT = "INSERT INTO bench_pgbench (note) VALUES ('x');\n"
TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)


def run(admin: str, clients: list[int], seconds: float, exe: str) -> dict[str, Any]:
    name = "bench_pgbench"
    db = common.fresh_database(admin, name)
    out: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "insert.sql"
            script.write_text(SCRIPT)
            for n in clients:
                with psycopg.connect(db, autocommit=True) as conn:  # the same empty table for every count
                    conn.execute("DROP TABLE IF EXISTS bench_pgbench")
                    conn.execute(TABLE)
                threads = max(1, min(n, os.cpu_count() or 1))
                cmd = [exe, "-n", "-M", "prepared", "-f", str(script), "-c", str(n), "-j", str(threads),
                       "-T", str(max(1, round(seconds))), db]
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
                match = TPS.search(done.stdout)
                if done.returncode != 0 or not match:
                    raise RuntimeError(f"pgbench -c {n} failed ({done.returncode}): {done.stderr.strip()[-300:]}")
                with psycopg.connect(db, autocommit=True) as conn:
                    rows = conn.execute("SELECT count(*) FROM bench_pgbench").fetchone()[0]  # type: ignore[index]
                out[str(n)] = {"tps": round(float(match.group(1)), 1), "threads": threads, "rows": rows}
                print(f"  pgbench {n:>2} client(s): {float(match.group(1)):,.0f} tps", file=sys.stderr)
    finally:
        common.drop_database(admin, name)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each run (whole seconds, default 5)")
    ap.add_argument("--clients", default="1,4,16", help="comma-separated client counts (default 1,4,16)")
    args = ap.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",") if c.strip()]
    exe = shutil.which("pgbench")
    results: dict[str, Any] = {"benchmark": "pgbench", "machine": common.machine_info(), "seconds": args.seconds,
                               "statement": SCRIPT.strip(), "protocol": "prepared", "pgbench": exe}
    if exe is None:
        results["available"] = False
        print("pgbench is not on PATH: nothing measured", file=sys.stderr)
    else:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
        results.update(available=True, pgbench_version=version)
        with common.postgres_server() as admin:
            results["server"] = common.server_info(admin)
            results["clients"] = run(admin, clients, args.seconds, exe)
        common.print_table(["clients", "tps"], [[c, v["tps"]] for c, v in results["clients"].items()],
                           title=f"pgbench single-row INSERT ({version})")
    print(f"results: {common.shown(common.write_results('pgbench', results))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

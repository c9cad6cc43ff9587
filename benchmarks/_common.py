"""Shared helpers for the benchmarks: one private PostgreSQL per run, fresh databases, timing, results.

Every figure a benchmark reports is a ratio against a baseline measured in the same run on the same
server: the machines these run on are shared and noisy, so absolute numbers only describe one run.

The server is ``BENCH_DATABASE_URL`` when it is set (an admin URL: the benchmarks create and drop
databases there), else a private embedded PostgreSQL (the ``pgserver`` wheel) started in a temporary
folder for this run only, stopped and deleted at the end.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = [
    "BENCH_DIR",
    "REPO_ROOT",
    "RESULTS_DIR",
    "child_env",
    "commit_latency_ms",
    "drop_database",
    "fresh_database",
    "latency_summary",
    "machine_info",
    "median",
    "migrate_automate",
    "percentile",
    "postgres_server",
    "print_table",
    "ratio",
    "server_info",
    "shown",
    "with_dbname",
    "write_results",
]

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
# The suite (python -m benchmarks) points every script at its own scratch folder, so one run's files
# never overwrite another's (or the committed ones) while it collects them.
RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR") or BENCH_DIR / "results").resolve()


# --- the server ----------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield an admin URL: ``$BENCH_DATABASE_URL``, else a private embedded server for this run.

    The embedded server lives in a temporary folder; it is stopped and the folder deleted on exit (also
    on errors and Ctrl-C), so a benchmark leaves no server behind.
    """
    external = os.environ.get("BENCH_DATABASE_URL")
    if external:
        print("bench: using BENCH_DATABASE_URL", file=sys.stderr)
        yield external
        return
    from automate.embedded import embedded_url

    tmp = Path(tempfile.mkdtemp(prefix="automate-bench-"))
    pgdata = tmp / "pgdata"
    try:
        started = time.perf_counter()
        url = embedded_url(pgdata, quiet=True)
        print(f"bench: private PostgreSQL in {pgdata} ({time.perf_counter() - started:.1f}s to start)",
              file=sys.stderr)
        yield url
    finally:
        _stop_embedded(pgdata)
        shutil.rmtree(tmp, ignore_errors=True)


def _stop_embedded(pgdata: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import pgserver
        except ImportError:  # pragma: no cover - embedded_url would have failed first
            return
    if not pgdata.exists():
        return
    try:
        # Returns the handle embedded_url() opened in this process; cleanup() stops the server when this
        # process is its last user (the children got a URL, never a handle). atexit later is a no-op.
        pgserver.get_server(pgdata, cleanup_mode="stop").cleanup()
    except Exception as exc:  # never hide the benchmark's own error behind a cleanup error
        print(f"bench: could not stop the embedded server cleanly: {exc}", file=sys.stderr)


def with_dbname(url: str, dbname: str) -> str:
    """The same server and credentials, another database (a libpq key=value string)."""
    return make_conninfo(url, dbname=dbname)


def fresh_database(admin_url: str, name: str) -> str:
    """Drop ``name`` if it exists, create it empty, and return its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_dbname(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def child_env(db_url: str, **extra: str) -> dict[str, str]:
    """Environment for a child process that uses Django with ``benchmarks/bench_settings.py``."""
    env = dict(os.environ)
    paths = [str(BENCH_DIR), str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env.update(
        PYTHONPATH=os.pathsep.join(paths),
        DJANGO_SETTINGS_MODULE="bench_settings",
        BENCH_DB_URL=db_url,
        DATABASE_URL=db_url,
    )
    env.update(extra)
    return env


def migrate_automate(db_url: str) -> None:
    """Create the automate schema in ``db_url`` with Django's ``migrate`` (bench_settings)."""
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
        env=child_env(db_url),
        cwd=REPO_ROOT,
        check=True,
    )


def server_info(url: str) -> dict[str, Any]:
    """Version and the settings that decide commit-bound figures, recorded with every result."""
    with psycopg.connect(url, autocommit=True) as conn:
        info: dict[str, Any] = {"version": conn.execute("SHOW server_version").fetchone()[0]}  # type: ignore[index]
        for name in ("fsync", "synchronous_commit", "shared_buffers", "max_connections", "wal_level"):
            info[name] = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]  # type: ignore[index]
    info["embedded"] = not os.environ.get("BENCH_DATABASE_URL")
    host = conninfo_to_dict(url).get("host") or ""
    info["unix_socket"] = str(host).startswith("/")
    return info


def commit_latency_ms(url: str, commits: int = 200) -> dict[str, float]:
    """Median and p90 of one-row autocommit INSERTs: how much a commit (its WAL flush) costs right now.

    Recorded at the start and the end of a run: it explains commit-bound figures (one job or event per
    transaction) and shows whether the disk changed speed during the run. Uses a scratch table.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commit_probe (id bigserial PRIMARY KEY, at timestamptz)")
        times = []
        try:
            for _ in range(commits):
                t = time.perf_counter()
                conn.execute("INSERT INTO bench_commit_probe (at) VALUES (now())")
                times.append((time.perf_counter() - t) * 1000)
        finally:
            conn.execute("DROP TABLE bench_commit_probe")
    return {"p50_ms": round(percentile(times, 50), 3), "p90_ms": round(percentile(times, 90), 3)}


def machine_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


# --- numbers -------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a value that was actually observed."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean in milliseconds."""
    ms = [s * 1000 for s in seconds]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3),
        "mean_ms": round(sum(ms) / len(ms), 3),
    }


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or not baseline or math.isnan(value) or math.isnan(baseline):
        return None
    return value / baseline


# --- output --------------------------------------------------------------------------------------


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` (atomically: a .tmp file renamed into place)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)
    return path


def shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (for messages)."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}")
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True))))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))

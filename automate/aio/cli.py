"""``automate-aio-worker`` (also ``python -m automate.aio``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

__all__ = ["build_config", "main"]

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="automate-aio-worker",
        description="Run django-automate workflows: LISTEN for events, claim them, execute their steps.",
    )
    p.add_argument("--settings", help="Django settings module (default: $DJANGO_SETTINGS_MODULE)")
    p.add_argument("--concurrency", type=int, default=100, help="size of the step semaphore (default 100)")
    p.add_argument("--batch-size", type=int, help="jobs per claim (default EXECUTION.batch_size)")
    p.add_argument(
        "--prefetch", type=int,
        help="jobs claimed beyond --concurrency, waiting for a step permit (default: the batch size; 0: none)",
    )
    p.add_argument("--lease-seconds", type=float, help="claim lease (default EXECUTION.lease_seconds)")
    p.add_argument("--poll-interval", type=float, help="fallback poll, seconds (default EXECUTION.poll_interval)")
    p.add_argument("--grace", type=float, help="shutdown grace, seconds (default EXECUTION.shutdown_grace_seconds)")
    p.add_argument("--drain", action="store_true", help="exit 0 once the outbox is empty")
    p.add_argument("--log-level", default=os.environ.get("AUTOMATE_LOG_LEVEL", "INFO"))
    p.add_argument(
        "--metrics-port", type=int,
        help="serve Prometheus /metrics on this port when DJANGO_AUTOMATE.METRICS_EXPORT is true "
        "(default 9464; 0: do not serve)",
    )
    p.add_argument("--metrics-addr", default="0.0.0.0", help="address for --metrics-port (default 0.0.0.0)")  # noqa: S104
    p.add_argument(
        "--loop", choices=["asyncio", "uvloop"], default="asyncio",
        help="event loop (default asyncio; uvloop needs the 'uvloop' extra: pip install 'django-automate[uvloop]')",
    )
    return p


def _start_metrics(args: argparse.Namespace, conninfo: str) -> str | None:
    """Serve /metrics if METRICS_EXPORT asks for it; an error message when it cannot."""
    from automate.conf import get_settings

    from . import metrics

    export = get_settings().METRICS_EXPORT
    port = args.metrics_port
    if port is not None and not 0 <= port <= 65535:
        return f"--metrics-port must be between 0 and 65535, got {port}"
    if not export:
        if port:
            return f"--metrics-port {port} given, but DJANGO_AUTOMATE.METRICS_EXPORT is False: set it to True"
        return None
    port = 9464 if port is None else port
    if port == 0:
        return None
    metrics.enable()
    try:
        server = metrics.serve(port, conninfo, args.metrics_addr)
    except OSError as exc:
        metrics.enable(False)
        return f"--metrics-port {port}: cannot listen on {args.metrics_addr}:{port}: {exc.strerror or exc}"
    log.info("automate.metrics.serving", extra={"addr": args.metrics_addr, "port": server.server_port})
    return None


def build_config(args: argparse.Namespace) -> Any:
    """Django settings + command line -> WorkerConfig. Needs django.setup() first."""
    from django.db import connections

    from automate.conf import get_settings
    from automate.embedded import conninfo_from_django

    from .config import WorkerConfig

    s = get_settings()
    ex = s.EXECUTION
    return WorkerConfig(
        conninfo=conninfo_from_django(connections["default"].settings_dict),
        concurrency=args.concurrency,
        prefetch=args.prefetch,
        batch_size=args.batch_size or ex.batch_size,
        lease_seconds=args.lease_seconds or ex.lease_seconds,
        poll_interval=args.poll_interval or ex.poll_interval,
        drain=args.drain,
        enabled=s.ENABLED,
        step_timeout=ex.timeout_seconds,
        max_retries=ex.max_retries,
        park_after=ex.park_after_seconds,
        shutdown_grace=ex.shutdown_grace_seconds if args.grace is None else args.grace,
        mode=s.WORKER_MODE,
    )


def _loop_runner(name: str) -> Any:
    """``asyncio.run`` or ``uvloop.run`` for ``--loop``; a message (str) when uvloop is asked for but missing.
    asyncio stays the default: uvloop is faster for psycopg's many small awaits (see benchmarks/), but it is
    a compiled extra that not every platform has, and the worker must not change loops behind a user's back
    because a package happens to be installed."""
    if name == "asyncio":
        return asyncio.run
    try:
        import uvloop
    except ImportError:
        return "--loop uvloop: uvloop is not installed (pip install 'django-automate[uvloop]')"
    return uvloop.run


def _cwd_on_path() -> None:
    """Put the current directory first on ``sys.path``, as ``python -m automate.aio`` and ``manage.py``
    have it: an installed console script starts with its own bin directory there instead, so
    ``--settings project.settings`` would not import from the project it is run in."""
    cwd = os.getcwd()
    if not any(os.path.abspath(entry or os.curdir) == cwd for entry in sys.path):
        sys.path.insert(0, cwd)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _cwd_on_path()
    if args.settings:
        os.environ["DJANGO_SETTINGS_MODULE"] = args.settings
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "automate.aio.default_settings")
    from automate.observability.tracing import TracingConfigError, configure_tracing, shutdown_tracing

    try:  # before django.setup(), so the app's ready() finds this provider and leaves it
        configure_tracing("automate-worker")
    except TracingConfigError as exc:
        print(f"automate-aio-worker: {exc}", file=sys.stderr)
        return 2
    try:
        return _main(args)
    finally:
        shutdown_tracing()  # export the spans still queued


def _main(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from django.core.exceptions import ImproperlyConfigured

    from automate.conf import get_settings
    from automate.observability.logs import configure_logging

    try:
        configure_logging(get_settings().LOGGING_SCHEMA, level=args.log_level.upper(), logger="", stream="stdout")
    except (ValueError, ImproperlyConfigured) as exc:
        print(f"automate-aio-worker: {exc}", file=sys.stderr)
        return 2
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)  # the banner and the final line are shown at any --log-level

    from automate.connectors import load_connectors

    from .worker import Worker

    try:
        load_connectors()  # the users' connectors (CONNECTORS, entry points): a bad one stops us here
        cfg = build_config(args)
    except (ValueError, ImproperlyConfigured) as exc:
        print(f"automate-aio-worker: {exc}", file=sys.stderr)
        return 2
    runner = _loop_runner(args.loop)
    if isinstance(runner, str):
        print(f"automate-aio-worker: {runner}", file=sys.stderr)
        return 2
    problem = _start_metrics(args, cfg.conninfo)
    if problem:
        print(f"automate-aio-worker: {problem}", file=sys.stderr)
        return 2
    host = cfg.conninfo.split("host=")[-1].split()[0] if "host=" in cfg.conninfo else "local"
    log.info(
        f"automate-aio-worker {cfg.worker_id} db={host} concurrency={cfg.concurrency} "
        f"batch={cfg.batch_size} prefetch={cfg.prefetch_jobs} lease={cfg.lease_seconds:g}s mode={cfg.mode} "
        f"enabled={cfg.enabled} drain={cfg.drain} loop={args.loop}",
        extra={"event_action": "automate.worker.started", "worker_id": cfg.worker_id},
    )
    worker = Worker(cfg)
    stats = runner(worker.run(install_signals=True))
    log.info(
        f"automate-aio-worker {cfg.worker_id} stopped: claimed={stats.claimed} lost={stats.lost} "
        f"claims={stats.claims} flushes={worker.recorder.flushes}",
        extra={"event_action": "automate.worker.stopped", "worker_id": cfg.worker_id},
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``automate-aio-worker`` (also ``python -m automate.aio``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

__all__ = ["build_config", "main"]


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
    return p


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
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    import django

    django.setup()
    from django.core.exceptions import ImproperlyConfigured

    from automate.connectors import load_connectors

    from .worker import Worker

    try:
        load_connectors()  # the users' connectors (CONNECTORS, entry points): a bad one stops us here
        cfg = build_config(args)
    except (ValueError, ImproperlyConfigured) as exc:
        print(f"automate-aio-worker: {exc}", file=sys.stderr)
        return 2
    host = cfg.conninfo.split("host=")[-1].split()[0] if "host=" in cfg.conninfo else "local"
    print(
        f"automate-aio-worker {cfg.worker_id} db={host} concurrency={cfg.concurrency} "
        f"batch={cfg.batch_size} prefetch={cfg.prefetch_jobs} lease={cfg.lease_seconds:g}s mode={cfg.mode} "
        f"enabled={cfg.enabled} drain={cfg.drain}",
        flush=True,
    )
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    stats = runner(Worker(cfg).run(install_signals=True))
    print(
        f"automate-aio-worker {cfg.worker_id} stopped: claimed={stats.claimed} lost={stats.lost}",
        flush=True,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

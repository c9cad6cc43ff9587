"""``WORKER_MODE = "synchronous"`` (development and tests): what ``emit_event``, ``run_workflow`` and the
tasks backend enqueue runs in the calling thread when the transaction commits, before the call returns
in autocommit mode, with the same records a worker writes (``automate.aio.inline``).

The jobs run after the commit, never inside it: the engine uses its own connections, which cannot see
rows the caller has not committed, and a rolled-back transaction runs nothing. So inside
``transaction.atomic()`` the workflows run when the outermost block commits; in Django's ``TestCase``
(whose transaction never commits) they do not run at all: use ``TransactionTestCase`` (pytest-django:
``django_db(transaction=True)``). From async code (``aemit_event``), the call runs in Django's sync thread,
which has no event loop; a call made on a thread whose event loop is running uses a private loop in a
helper thread. Errors of the engine itself are logged (``automate.synchronous.failed``), not raised: the
data is committed, and a worker would pick the jobs up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from .conf import get_settings
from .embedded import conninfo_from_django

__all__ = ["enabled", "run_now", "run_on_commit"]

log = logging.getLogger(__name__)


def enabled() -> bool:
    return get_settings().WORKER_MODE == "synchronous"


def run_on_commit(using: str = DEFAULT_DB_ALIAS, *, event_ids: Sequence[str] = (), job_ids: Sequence[int] = ()) -> None:
    """Run these jobs when the current transaction commits (at once in autocommit mode)."""
    transaction.on_commit(partial(run_now, using, list(map(str, event_ids)), list(job_ids)), using=using)


def run_now(using: str, event_ids: Sequence[str], job_ids: Sequence[int]) -> int:
    from .aio.config import WorkerConfig
    from .aio.inline import run_jobs

    settings = get_settings()
    if not settings.ENABLED:  # the kill switch: recorded, not run
        return 0
    ex = settings.EXECUTION
    cfg = WorkerConfig(
        conninfo=conninfo_from_django(connections[using].settings_dict),
        worker_id=f"sync-{socket.gethostname()[:40]}-{os.getpid()}",
        concurrency=100, lease_seconds=ex.lease_seconds, step_timeout=ex.timeout_seconds,
        max_retries=ex.max_retries, park_after=ex.park_after_seconds, mode="synchronous", flush_interval=0.0,
    )
    try:
        asyncio.get_running_loop()
        in_loop = True  # this thread runs an event loop: a private one, in a helper thread
    except RuntimeError:
        in_loop = False
    try:
        coro = run_jobs(cfg, event_ids=event_ids, job_ids=job_ids)
        if not in_loop:
            return asyncio.run(coro)
        with ThreadPoolExecutor(1, thread_name_prefix="automate-sync") as pool:
            return pool.submit(asyncio.run, coro).result()
    except Exception as exc:
        from .secrets import redact

        log.error("automate.synchronous.failed: %s", type(exc).__name__, extra={"error": redact(str(exc)[:500])})
        return 0

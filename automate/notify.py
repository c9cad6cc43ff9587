"""The wake-up signal: ``NOTIFY automate_outbox`` after the commit, never inside it.

Measured on PostgreSQL 16 (see the foundation issue): a NOTIFY inside each write transaction takes a
database-wide lock held through the commit's WAL flush and cuts insert throughput to about 30%. So the
notification is sent from an ``on_commit`` hook, in its own tiny autocommit transaction, and it is
coalesced twice:

* per transaction: the hook is registered once, however many events the transaction emits;
* per process: while one thread is sending, commits from other threads only raise a ``dirty`` flag and
  the sender sends once more for all of them. Every commit that raised the flag before a send started is
  covered by that send, so no wake-up is lost, and a burst of commits costs one or two notifications.

A rolled-back transaction drops its hooks, so it sends nothing. Rows inserted another way (raw SQL,
another service) are found by the worker's fallback poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from .queries import NOTIFY_OUTBOX

__all__ = ["notify_on_commit"]

log = logging.getLogger(__name__)


class _Coalescer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dirty = False
        self._sending = False

    def commit_happened(self, using: str) -> None:
        with self._lock:
            self._dirty = True
            if self._sending:
                return  # the thread that is sending will send once more for us
            self._sending = True
        try:
            while True:
                with self._lock:
                    if not self._dirty:
                        self._sending = False
                        return
                    self._dirty = False
                self._send(using)
        except BaseException:
            with self._lock:
                self._sending = False
            raise

    @staticmethod
    def _send(using: str) -> None:
        try:
            with connections[using].cursor() as cursor:
                cursor.execute(NOTIFY_OUTBOX)
        except Exception:
            # The data is committed; a lost wake-up only delays the worker until its fallback poll.
            log.warning("automate.notify.failed", exc_info=True)


_coalescer = _Coalescer()


def _hook_for(using: str) -> Callable[[], None]:
    def _after_commit() -> None:
        _coalescer.commit_happened(using)

    _after_commit.automate_notify = using  # type: ignore[attr-defined]
    return _after_commit


def notify_on_commit(using: str = DEFAULT_DB_ALIAS) -> None:
    """Arrange one NOTIFY after the current transaction commits (at once in autocommit mode)."""
    conn = connections[using]
    if conn.in_atomic_block:
        # Django's on_commit list holds (savepoint ids, func, robust); one hook per transaction is enough.
        # A savepoint rollback drops the hook together with the rows it was for.
        for entry in conn.run_on_commit:
            if getattr(entry[1], "automate_notify", None) == using:
                return
        transaction.on_commit(_hook_for(using), using=using)
    else:
        _coalescer.commit_happened(using)

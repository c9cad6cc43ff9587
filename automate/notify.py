"""The wake-up signal: ``NOTIFY automate_outbox`` after the commit, never inside it, never on the
emitting request's path.

Measured on PostgreSQL 16 (see the foundation issue): a NOTIFY inside each write transaction takes a
database-wide lock held through the commit's WAL flush and cuts insert throughput to about 30%. Sending
it after the commit from the emitting thread (as a first version did) avoided the lock but still cost
each emit a second round trip: ``benchmarks/bench_emit.py`` measured emit_event at 40% of a plain INSERT,
a third of that gap being the NOTIFY. So the commit hook only raises a flag, and one background thread
per process and database sends the NOTIFY on its own autocommit connection:

* per transaction: the hook is registered once, however many events the transaction emits;
* per process: while the thread is sending, further commits only raise the flag again, and it sends once
  more for all of them. Every commit that raised the flag before a send started is covered by that send,
  so no wake-up is lost, and a burst of commits costs one or two notifications.

A rolled-back transaction drops its hooks, so it sends nothing. If the notifier cannot reach the
database, the data is still committed: the worker's fallback poll finds the rows. After a fork (a
pre-forking server) the child starts its own thread and connection, with fresh locks and no wake-up
inherited. The connection is closed after half a second without commits, so an idle process holds no
extra connection (and a test database can be dropped); ``close()`` closes it at once.

At interpreter exit (a management command, a cron script, ``manage.py shell``) the sender is a daemon
thread that would die with the process, taking a just-requested wake-up with it: the worker would only
find the event at its next fallback poll. So an ``atexit`` hook sends what is still pending and closes
the connection, waiting at most ``EXIT_FLUSH_SECONDS`` in all, so an exit never hangs on a database
that is down or unreachable. (``os._exit`` skips atexit hooks; call ``wait_idle()`` before it.)
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from .embedded import conninfo_from_django
from .queries import NOTIFY_OUTBOX

__all__ = ["EXIT_FLUSH_SECONDS", "close", "flush", "notify_on_commit", "wait_idle"]

IDLE_CLOSE_SECONDS = 0.5
# At most one NOTIFY per 2 ms per process: under a steady stream of commits one wake-up covers the
# commits of the last 2 ms (the worker is busy then anyway); the first commit after a quiet spell
# is still sent at once, so an idle worker's wake-up latency is unchanged.
MIN_INTERVAL_SECONDS = 0.002
# The longest an exiting process waits for its last wake-up (a reachable database answers in a few ms).
EXIT_FLUSH_SECONDS = 1.0

log = logging.getLogger(__name__)


class _Notifier:
    """One sender thread for one database alias."""

    def __init__(self, using: str) -> None:
        self.using = using
        self._reset()
        self.sent = 0

    def _reset(self) -> None:
        """A fresh state: at creation and in a forked child, whose copy of the lock may be held by a
        thread that does not exist there (the parent's sender sends the parent's wake-ups)."""
        self._cond = threading.Condition()
        self._pending = False
        self._sending = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closing = False

    def request(self) -> None:
        with self._cond:
            self._pending = True
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name=f"automate-notify-{self.using}", daemon=True)
                self._thread.start()
            self._cond.notify()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until every requested NOTIFY was sent (tests, scripts about to exit).

        True once nothing is pending; False if ``timeout`` passed first. A failed send counts as done
        (the fallback poll covers it).
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._pending or self._sending) and self._thread is not None and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Send what is pending, then close the connection; the next commit opens it again."""
        thread = self._thread
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            self._closing = False
            if thread is None or not thread.is_alive():
                self._thread = None

    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        failures = 0
        last_sent = float("-inf")
        while True:
            with self._cond:
                while not self._pending:
                    if self._closing or (conn is not None and not self._cond.wait(IDLE_CLOSE_SECONDS)):
                        break  # asked to close, or idle: give the connection back
                    if conn is None:
                        self._cond.wait()
                if not self._pending:
                    if conn is not None:
                        conn.close()
                        conn = None
                    if self._closing:
                        self._thread = None
                        return
                    continue
                self._sending = True
            gap = MIN_INTERVAL_SECONDS - (time.monotonic() - last_sent)
            if gap > 0:
                time.sleep(gap)  # commits that arrive meanwhile ride on this send
            with self._cond:
                self._pending = False
            try:
                last_sent = time.monotonic()
                if conn is None or conn.closed:
                    conninfo = conninfo_from_django(
                        connections[self.using].settings_dict, application_name="automate-notify"
                    )
                    conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
                conn.execute(NOTIFY_OUTBOX)
                self.sent += 1
                failures = 0
            except Exception:
                # The rows are committed; a lost wake-up only delays the worker until its fallback poll.
                failures += 1
                log.warning("automate.notify.failed", exc_info=failures == 1)
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(min(1.0, 0.01 * 2**failures))
            finally:
                with self._cond:
                    self._sending = False
                    self._cond.notify_all()


_notifiers: dict[str, _Notifier] = {}
_lock = threading.Lock()


def _notifier(using: str) -> _Notifier:
    notifier = _notifiers.get(using)
    if notifier is None:
        with _lock:
            notifier = _notifiers.setdefault(using, _Notifier(using))
    return notifier


def _hook_for(using: str) -> Callable[[], None]:
    notifier = _notifier(using)

    def _after_commit() -> None:
        notifier.request()

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
        _notifier(using).request()


def wait_idle(using: str = DEFAULT_DB_ALIAS, timeout: float = 5.0) -> bool:
    """Wait until the notifier of ``using`` has sent everything requested so far."""
    notifier = _notifiers.get(using)
    return True if notifier is None else notifier.wait_idle(timeout)


def close() -> None:
    """Close every notifier connection (test teardown, before dropping a database)."""
    for notifier in list(_notifiers.values()):
        notifier.close()


def flush(timeout: float = EXIT_FLUSH_SECONDS) -> bool:
    """Send every pending wake-up of this process and close the notifier connections, waiting at most
    ``timeout`` seconds in all; True if everything was sent in time. Runs at interpreter exit."""
    deadline = time.monotonic() + timeout
    done = True
    for notifier in list(_notifiers.values()):  # (a forked child's copies were reset: nothing pending)
        done = notifier.wait_idle(max(0.0, deadline - time.monotonic())) and done
        notifier.close(max(0.0, deadline - time.monotonic()))
    return done


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    for notifier in list(_notifiers.values()):
        notifier._reset()


atexit.register(flush)
os.register_at_fork(after_in_child=_after_fork_in_child)

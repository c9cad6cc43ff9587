"""The wake-up signal: ``NOTIFY automate_outbox`` after the commit, never inside it, and never a round
trip on the emitting request's path.

A NOTIFY inside each write transaction takes a database-wide lock held through the commit's WAL flush
(PostgreSQL 16: insert throughput down to about 30%). Sending it after the commit and waiting for the
answer cost each emit a second round trip; handing every send to a thread (at most one per 2 ms) took
that off the request, but ``benchmarks/bench_emit.py`` then found each send costing several emits with
16 emitting processes on 2 cores (it wakes this thread, the notifier's backend and every listener), and
a 2 ms interval coalesced almost nothing at that rate. So, per process and database alias, one notifier
connection, and:

* the first commit after a quiet spell writes the NOTIFY on it from the committing thread, without
  waiting for the answer (one ``send()``; the answer is read by the next send);
* a commit sooner than the interval after the previous send, or while the connection is busy, missing
  or held by another thread, only raises a flag: the sender thread sends one NOTIFY for all of them when
  the interval is over, and again once per interval (sleeping in between: one wake-up per send) while
  commits keep raising it. Every commit that raised the flag before a send started is covered by that
  send, so no wake-up is lost;
* the interval is 2 ms after a quiet spell and doubles with every send that follows the previous one
  within 10 ms (or two intervals), up to 50 ms: a short burst is covered within a few ms, and a process
  committing more often than every 10 ms all along sends 20 NOTIFYs a second;
* per transaction the commit hook is registered once, however many events the transaction emits.

The committing thread never connects, never blocks on the connection (it only tries its lock) and never
raises: when anything is off it falls back to the flag. A rolled-back transaction drops its hooks, so it
sends nothing. If the notifier cannot reach the database, the data is still committed: the worker's
fallback poll finds the rows. After a fork the child starts its own thread and connection, with fresh
locks and no wake-up inherited. The connection is closed after half a second without sends, so an idle
process holds no extra connection (and a test database can be dropped); ``close()`` closes it at once.

At interpreter exit (a management command, a cron script) the daemon sender thread would die with the
process, taking a just-requested wake-up with it. So an ``atexit`` hook sends what is pending, reads the
answer of a NOTIFY in flight and closes the connection, waiting at most ``EXIT_FLUSH_SECONDS`` in all, so
an exit never hangs on a database that is down. (``os._exit`` skips atexit hooks; call ``wait_idle()``.)
"""

from __future__ import annotations

import atexit
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from psycopg import pq

from .embedded import conninfo_from_django
from .queries import NOTIFY_OUTBOX

__all__ = ["EXIT_FLUSH_SECONDS", "close", "flush", "notify_on_commit", "wait_idle"]

IDLE_CLOSE_SECONDS = 0.5
# The interval between two NOTIFYs of a process (see above). 16 emitting processes on 2 cores
# (bench_emit.py, automate / plain INSERTs, runs under different loads): fixed 2 ms 59-66%, fixed 10 ms
# 75-78%, 2 ms doubling up to 25 ms 75-85%, to 50 ms 80-93%, to 100 ms 90%. The maximum is the longest a
# commit waits for its wake-up, and only while its process commits all along (the worker claims again
# at once after every claim that found jobs, so it is rarely waiting then). A send later than QUIET_SECONDS (or two
# intervals) after the previous one follows a quiet spell: commits 10 ms or more apart (bench_peers'
# latency test: 20 ms) are each sent at once.
MIN_INTERVAL_SECONDS = 0.002
MAX_INTERVAL_SECONDS = 0.05
QUIET_SECONDS = 0.01
# The longest an exiting process waits for its last wake-up (a reachable database answers in a few ms).
EXIT_FLUSH_SECONDS = 1.0
# The longest the sender thread waits for a NOTIFY's answer before it gives the connection up.
ANSWER_TIMEOUT_SECONDS = 5.0

_NOTIFY = NOTIFY_OUTBOX.encode()
log = logging.getLogger(__name__)
# Connections inherited by a forked child: the parent's, never used or closed here (closing would end
# the parent's session), only kept referenced so that collecting them does not warn.
_inherited: list[Any] = []


class _Notifier:
    """The notifier connection and sender thread of one database alias."""

    def __init__(self, using: str) -> None:
        self.using = using
        self._reset()
        self.sent = 0

    def _reset(self) -> None:
        """A fresh state: at creation and in a forked child, whose copies of the locks may be held by a
        thread that does not exist there (the parent's sender sends the parent's wake-ups)."""
        if getattr(self, "_conn", None) is not None:
            _inherited.append(self._conn)
        self._cond = threading.Condition()  # guards the flags below and wakes the sender thread
        self._pending = False
        self._sending = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closing = False
        # Whoever holds _io may use the connection; the sender thread alone opens it.
        self._io = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._in_flight = False  # a NOTIFY was written whose answer is not read yet
        self._last_sent = float("-inf")  # time.monotonic() when the last NOTIFY was written
        self._interval = MIN_INTERVAL_SECONDS  # the next NOTIFY not before _last_sent + _interval

    # -- the committing thread -------------------------------------------------------------------

    def request(self) -> None:
        """A transaction committed: make sure a NOTIFY starts after this moment."""
        if self._pending and self._thread is not None:
            return  # the sender clears the flag before it sends: that send starts after now
        if time.monotonic() - self._last_sent >= self._interval and self._io.acquire(blocking=False):
            try:
                if self._send_now():
                    return
            except Exception:  # a broken connection: the sender thread opens a new one
                self._drop()
            finally:
                self._io.release()
        self._ask_thread()

    def _ask_thread(self) -> None:
        """Raise the flag for the sender thread (starting it if needed)."""
        with self._cond:
            self._pending = True
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name=f"automate-notify-{self.using}", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _send_now(self) -> bool:
        """Write a NOTIFY without waiting (``_io`` held); False when it is for the sender thread."""
        conn = self._conn
        if conn is None or conn.closed or self._pid != os.getpid():
            return False
        if time.monotonic() - self._last_sent < self._interval:
            return False
        pgconn = conn.pgconn
        if self._in_flight:
            if not self._read_answer(pgconn, None):
                return False  # the previous NOTIFY is not answered yet: only one query at a time
        else:
            pgconn.consume_input()  # raises if the server has closed the connection meanwhile
        self._write(pgconn)
        # flush() is 1 if the socket took only part of it (not seen in practice): the thread finishes it.
        return pgconn.flush() == 0

    # -- the connection (``_io`` held) -----------------------------------------------------------

    def _write(self, pgconn: pq.abc.PGconn) -> None:
        now = time.monotonic()
        if now - self._last_sent <= max(2 * self._interval, QUIET_SECONDS):  # commits go on: wait longer
            self._interval = min(2 * self._interval, MAX_INTERVAL_SECONDS)
        else:  # after a quiet spell
            self._interval = MIN_INTERVAL_SECONDS
        self._last_sent = now
        pgconn.send_query(_NOTIFY)
        self._in_flight = True
        self.sent += 1

    def _read_answer(self, pgconn: pq.abc.PGconn, deadline: float | None) -> bool:
        """Read the answer of the NOTIFY in flight: True once it is read; with ``deadline`` None, False
        if it has not arrived yet, else wait for it (TimeoutError past the deadline)."""
        while True:
            writing = pgconn.flush() == 1
            pgconn.consume_input()
            while not pgconn.is_busy():
                result = pgconn.get_result()
                if result is None:
                    self._in_flight = False
                    return True
                if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
                    # The rows are committed; a lost wake-up only delays the worker until its fallback poll.
                    message = (result.error_message or b"").decode(errors="replace").strip()
                    log.warning("automate.notify.failed", extra={"error": message})
            if deadline is None:
                return False
            self._wait_socket(pgconn, deadline, write=writing)

    @staticmethod
    def _wait_socket(pgconn: pq.abc.PGconn, deadline: float, write: bool) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer to NOTIFY")
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if write else 0)
        with selectors.DefaultSelector() as selector:  # (select.select fails on descriptors >= 1024)
            selector.register(pgconn.socket, events)
            selector.select(left)

    def _drop(self) -> None:
        conn, self._conn, self._in_flight = self._conn, None, False
        if conn is not None:
            conn.close()

    def _settle(self, timeout: float) -> None:
        """Read the answer of a NOTIFY still in flight (every caller but the committing thread). If the
        connection broke, that NOTIFY may not have been sent: the sender thread sends another."""
        if not self._in_flight or not self._io.acquire(timeout=max(timeout, 0.001)):
            return
        lost = False
        try:
            if self._in_flight and self._conn is not None and self._pid == os.getpid():
                self._read_answer(self._conn.pgconn, time.monotonic() + timeout)
        except Exception:
            log.warning("automate.notify.failed", exc_info=True)
            self._drop()
            lost = True
        finally:
            self._io.release()
        if lost:
            self._ask_thread()

    # -- waiting, closing ------------------------------------------------------------------------

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until every requested NOTIFY was sent and answered (tests, scripts about to exit).

        True once nothing is pending; False if ``timeout`` passed first. A failed send counts as done
        (the fallback poll covers it).
        """
        deadline = time.monotonic() + timeout
        for _ in range(2):  # (once more if the NOTIFY in flight turns out lost and is sent again)
            with self._cond:
                while (self._pending or self._sending) and self._thread is not None and self._thread.is_alive():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
            self._settle(deadline - time.monotonic())
            if not self._pending:
                break
        return not self._pending and (not self._in_flight or self._pid != os.getpid())

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
        if self._pid == os.getpid() and self._io.acquire(timeout=max(timeout, 0.001)):
            try:  # (a thread that never ran leaves nothing; one that timed out keeps its connection)
                if thread is None or not thread.is_alive():
                    self._drop()
            finally:
                self._io.release()

    # -- the sender thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._serve()
        finally:  # (normally set by _serve under _cond; this covers a thread ended by a bug)
            if self._thread is threading.current_thread():
                self._thread = None

    def _serve(self) -> None:
        failures = 0
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    if self._conn is None:
                        self._cond.wait()
                        continue
                    # Idle means no send for a while, by this thread or by committing threads.
                    idle_for = time.monotonic() - self._last_sent
                    if idle_for >= IDLE_CLOSE_SECONDS:
                        break
                    self._cond.wait(IDLE_CLOSE_SECONDS - idle_for)
                self._sending = self._pending
            if not self._sending:  # asked to close, or idle: give the connection back
                self._close_connection()  # (not under _cond: committing threads never wait for it)
                with self._cond:
                    if self._closing and not self._pending:
                        self._thread = None
                        return
                continue
            failures = self._burst(failures)

    def _burst(self, failures: int) -> int:
        """Send for the pending commits, then once per interval while commits keep raising the flag:
        sleeping out the interval instead of waiting to be woken costs one wake-up per send."""
        try:
            while True:
                gap = self._interval - (time.monotonic() - self._last_sent)
                if gap > 0:
                    time.sleep(gap)  # commits that arrive meanwhile ride on the next send
                with self._cond:
                    if not self._pending:
                        return failures
                    self._pending = False
                    cleared = time.monotonic()
                try:
                    with self._io:
                        if self._last_sent < cleared:  # else a committing thread sent after the flag was read
                            self._send()
                    failures = 0
                except Exception:
                    # The rows are committed; a lost wake-up only delays the worker until its fallback poll.
                    failures += 1
                    log.warning("automate.notify.failed", exc_info=failures == 1)
                    with self._io:
                        self._drop()
                    time.sleep(min(1.0, 0.01 * 2**failures))
                    return failures
        finally:
            with self._cond:
                self._sending = False
                self._cond.notify_all()

    def _send(self) -> None:
        """Write a NOTIFY (``_io`` held), opening the connection if needed; its answer is read by the next
        send (an interval later, when it has long arrived) or before the connection is closed."""
        deadline = time.monotonic() + ANSWER_TIMEOUT_SECONDS
        if self._conn is not None and self._in_flight:
            try:
                self._read_answer(self._conn.pgconn, deadline)
            except Exception:  # the connection broke: the NOTIFY below covers that one's commits too
                log.warning("automate.notify.failed", exc_info=True)
                self._drop()
        if self._conn is None or self._conn.closed:
            self._drop()
            conninfo = conninfo_from_django(connections[self.using].settings_dict, application_name="automate-notify")
            self._conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
        pgconn = self._conn.pgconn
        self._write(pgconn)
        while pgconn.flush():  # (only when the socket's buffer is full)
            self._wait_socket(pgconn, deadline, write=True)

    def _close_connection(self) -> None:
        """Give the idle connection back, once the last NOTIFY is answered (sent again if the connection
        broke before it was)."""
        lost = False
        with self._io:
            try:
                if self._in_flight and self._conn is not None:
                    self._read_answer(self._conn.pgconn, time.monotonic() + ANSWER_TIMEOUT_SECONDS)
            except Exception:
                log.warning("automate.notify.failed", exc_info=True)
                lost = True
            self._drop()
        if lost:
            with self._cond:
                self._pending = True


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

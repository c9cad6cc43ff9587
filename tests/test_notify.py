"""The wake-up signal: after the commit, one per transaction, none on rollback."""

from __future__ import annotations

import os
import threading

import psycopg
import pytest
from django.db import close_old_connections, connection, transaction

from automate.models import Event, OutboxJob
from automate.runtime import emit_event
from tests.conftest import drain_notifies

pytestmark = pytest.mark.django_db(transaction=True)


def _notifier():
    from automate import notify

    return notify._notifier("default")


def _our_hooks() -> int:
    """How many of our after-commit hooks the current transaction holds."""
    return sum(1 for entry in connection.run_on_commit if getattr(entry[1], "automate_notify", None))


def _sent_after(action) -> int:
    """How many NOTIFYs our notifier sent because of ``action`` (it is idle before and after)."""
    from automate import notify

    assert notify.wait_idle()
    before = _notifier().sent
    action()
    assert notify.wait_idle()
    return _notifier().sent - before


def test_committed_emit_notifies(listener):
    assert _sent_after(lambda: emit_event("order.created", {"id": 1})) == 1
    notes = drain_notifies(listener)
    assert [n.channel for n in notes] == ["automate_outbox"]


def test_the_hook_is_registered_once_and_sends_only_after_the_commit(listener, pg_conninfo):
    """Our code, not PostgreSQL, decides when: the notifier sends on its own connection, so a NOTIFY
    sent before the commit would reach the listener before the row is visible."""
    from automate import notify

    assert notify.wait_idle()
    before = _notifier().sent
    with transaction.atomic():
        event_id = emit_event("order.created", {"id": 1})
        emit_event("order.created", {"id": 2})
        assert _our_hooks() == 1
        assert notify.wait_idle() and _notifier().sent == before  # nothing requested yet
    notes = list(listener.notifies(timeout=5, stop_after=1))
    assert [n.channel for n in notes] == ["automate_outbox"]
    with psycopg.connect(pg_conninfo) as other:  # the wake-up came after the commit: the row is there
        assert other.execute("SELECT count(*) FROM automate_event WHERE id = %s", [event_id]).fetchone() == (1,)
    assert notify.wait_idle() and _notifier().sent == before + 1


def test_rollback_sends_nothing_and_stores_nothing(listener):
    def rolled_back() -> None:
        with pytest.raises(RuntimeError), transaction.atomic():
            emit_event("order.created", {"id": 1})
            raise RuntimeError("request failed")

    assert _sent_after(rolled_back) == 0
    assert drain_notifies(listener) == []
    assert Event.objects.count() == 0
    assert OutboxJob.objects.count() == 0


def test_500_events_in_one_transaction_register_one_hook_and_send_once(listener):
    def burst() -> None:
        with transaction.atomic():
            for i in range(500):
                emit_event("order.created", {"i": i})
            assert _our_hooks() == 1

    assert _sent_after(burst) == 1
    assert len(drain_notifies(listener, timeout=0.5)) == 1
    assert OutboxJob.objects.count() == 500


def test_commits_while_the_notifier_is_busy_are_coalesced_into_one_send(listener):
    """50 separate transactions commit while nobody can send (the notifier's lock and its connection's
    are held here): each raises the pending flag, and the sender covers all of them with a single
    NOTIFY. Were requests queued one by one, this would send 50."""
    notifier = _notifier()

    def fifty_commits_while_busy() -> None:
        # _cond is re-entrant: the emits' commit hooks take it too, the sender cannot; with _io held the
        # committing thread cannot write a NOTIFY itself either.
        with notifier._cond, notifier._io:
            for i in range(50):
                emit_event("order.created", {"i": i})  # autocommit: one transaction each

    assert _sent_after(fifty_commits_while_busy) == 1
    assert len(drain_notifies(listener)) == 1
    assert OutboxJob.objects.count() == 50


def test_savepoint_rollback_keeps_the_outer_notification(listener):
    def outer_survives() -> None:
        with transaction.atomic():
            emit_event("order.created", {"i": 0})
            with pytest.raises(ValueError), transaction.atomic():
                emit_event("order.created", {"i": 1})
                raise ValueError
            assert _our_hooks() == 1
            emit_event("order.created", {"i": 2})
            assert _our_hooks() == 1

    assert _sent_after(outer_survives) == 1
    assert len(drain_notifies(listener)) == 1
    assert sorted(e.payload["i"] for e in Event.objects.all()) == [0, 2]


def test_savepoint_rollback_of_the_first_emit_registers_the_hook_again(listener):
    """The hook of an emit in a rolled-back savepoint is dropped with it; a later emit must add one."""

    def later_emit() -> None:
        with transaction.atomic():
            with pytest.raises(ValueError), transaction.atomic():
                emit_event("order.created", {"i": 1})
                raise ValueError
            assert _our_hooks() == 0
            emit_event("order.created", {"i": 2})
            assert _our_hooks() == 1

    assert _sent_after(later_emit) == 1
    assert len(drain_notifies(listener)) == 1


def test_savepoint_rollback_of_the_only_emit_sends_nothing(listener):
    def only_emit_rolled_back() -> None:
        with transaction.atomic():
            with pytest.raises(ValueError), transaction.atomic():
                emit_event("order.created", {"i": 1})
                raise ValueError

    assert _sent_after(only_emit_rolled_back) == 0
    assert drain_notifies(listener) == []


def test_concurrent_committers_are_coalesced_but_never_lost(listener):
    """Many threads committing at once: at least one wake-up, and at most one per commit."""
    n_threads, per_thread = 8, 25
    barrier = threading.Barrier(n_threads)

    def emitter() -> None:
        barrier.wait()
        try:
            for i in range(per_thread):
                emit_event("order.created", {"i": i})
        finally:
            close_old_connections()

    threads = [threading.Thread(target=emitter) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    from automate import notify

    assert notify.wait_idle()
    notes = drain_notifies(listener, timeout=0.5)
    assert 0 < len(notes) <= n_threads * per_thread
    assert OutboxJob.objects.count() == n_threads * per_thread
    # After the burst no wake-up is pending: the last commit was covered by a send that followed it.
    emit_event("order.created", {"last": True})
    assert len(drain_notifies(listener)) == 1


def test_notify_off_sends_nothing(listener, settings):
    settings.DJANGO_AUTOMATE = {"EVENTS": {"notify": "off"}}
    assert _sent_after(lambda: emit_event("order.created", {"id": 1})) == 0
    assert drain_notifies(listener) == []
    assert OutboxJob.objects.count() == 1


def _notifier_connections(listener) -> int:
    return listener.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'automate-notify'"
    ).fetchone()[0]


def test_notify_is_sent_by_a_background_connection_that_closes_when_idle(listener):
    from automate import notify
    from tests.aio.procs import wait_until

    emit_event("order.created", {"id": 1})
    (note,) = drain_notifies(listener)
    # Sent from the notifier's own connection, not the emitting request's.
    assert note.pid != connection.connection.info.backend_pid
    wait_until(lambda: _notifier_connections(listener) == 0, 5, "the idle notifier connection was not closed")
    emit_event("order.created", {"id": 2})  # reopens on demand
    assert len(drain_notifies(listener)) == 1
    notify.close()
    # (a backend leaves pg_stat_activity shortly after its client hangs up: wait for it)
    wait_until(lambda: _notifier_connections(listener) == 0, 5, "close() left the notifier connection open")
    assert not notify._notifier("default")._thread


def test_emit_prepares_only_its_own_statement(listener, settings):
    """The emit statement is prepared; Django's connection keeps its own prepare_threshold."""
    from django.db import connection

    for i in range(3):
        emit_event("order.created", {"i": i})
    assert connection.connection.prepare_threshold is None
    prepared = connection.connection.execute(
        "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%%INSERT INTO automate_event%%'"
    ).fetchone()[0]
    assert prepared == 1
    settings.DJANGO_AUTOMATE = {"EVENTS": {"prepared_statements": False}}
    event_id = emit_event("order.created", {"i": 99})
    assert Event.objects.get(pk=event_id).payload == {"i": 99}


def test_trigger_mode_wakes_on_raw_sql_inserts(listener, settings):
    """Rows inserted by another service (raw SQL) notify through the optional trigger."""
    from io import StringIO

    from django.core.management import call_command
    from django.db import connection

    out = StringIO()
    call_command("automate_notify_trigger", "--install", stdout=out)
    assert "installed" in out.getvalue()
    settings.DJANGO_AUTOMATE = {"EVENTS": {"notify": "trigger"}}
    try:
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO automate_outbox_job (kind, status, priority, available_at, attempts, max_attempts, "
                "last_error, created_at, payload) VALUES ('task', 'PENDING', 0, now(), 0, 1, '', now(), '{}')"
            )
        assert len(drain_notifies(listener)) == 1
        emit_event("order.created", {})  # the trigger notifies; emit_event itself sends nothing more
        assert len(drain_notifies(listener)) == 1
        with pytest.raises(RuntimeError), transaction.atomic():
            emit_event("order.created", {})
            raise RuntimeError
        assert drain_notifies(listener) == []
    finally:
        out = StringIO()
        call_command("automate_notify_trigger", "--remove", stdout=out)
    assert "not installed" in out.getvalue()
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO automate_outbox_job (kind, status, priority, available_at, attempts, max_attempts, "
            "last_error, created_at, payload) VALUES ('task', 'PENDING', 0, now(), 0, 1, '', now(), '{}')"
        )
    assert drain_notifies(listener) == []


def test_a_forked_child_sends_its_own_wake_up_even_if_the_lock_was_held_at_the_fork(listener):
    """Fork safety: the child gets a fresh lock and state, so the notifier's lock held by another
    thread at the fork (a thread that does not exist in the child) cannot deadlock it, and the
    parent's pending wake-up is not the child's to send."""
    import signal
    import time

    from automate import notify

    emit_event("order.created", {"warm": True})  # the parent's sender thread and connection exist
    assert notify.wait_idle()
    drain_notifies(listener)
    notifier = _notifier()
    sent_at_fork, lock_at_fork, io_at_fork = notifier.sent, notifier._cond, notifier._io
    held, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with lock_at_fork, io_at_fork:  # (with the connection's lock held it cannot send at once)
            notifier.request()  # a commit waiting for the parent's sender
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert held.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: no Django connection used, only the notifier
        ok = False
        try:
            ok = notifier._cond is not lock_at_fork and notifier._io is not io_at_fork  # reset at the fork
            ok = ok and not notifier._pending and notifier._conn is None  # the parent's are not the child's
            notifier.request()  # on the copied locks, whose owner is gone, this would block forever
            ok = notify.flush() and notifier.sent == sent_at_fork + 1 and ok
        finally:
            os._exit(0 if ok else 1)
    release.set()
    holder.join(10)
    deadline = time.monotonic() + 20
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung on the notifier's lock")
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert notify.wait_idle()  # the parent's own pending wake-up, sent by its thread
    assert len(drain_notifies(listener)) == 2  # one from the child, one from the parent


def _warm_and_quiet() -> None:
    """The notifier's connection open, its last send longer ago than the longest interval."""
    import time

    from automate import notify

    emit_event("order.created", {"warm": True})
    assert notify.wait_idle()
    time.sleep(2 * notify.MAX_INTERVAL_SECONDS + 0.01)


def test_after_a_quiet_spell_the_committing_thread_writes_the_notify_itself(listener):
    """No hand-off to the sender thread (it cannot run here: its lock is held): the commit's own thread
    writes the NOTIFY on the open notifier connection, without waiting for the answer."""
    from automate import notify

    notifier = _notifier()
    _warm_and_quiet()
    drain_notifies(listener)
    sent = notifier.sent
    with notifier._cond:
        emit_event("order.created", {"id": 1})
        notes = list(listener.notifies(timeout=5, stop_after=1))
        assert notifier.sent == sent + 1 and not notifier._pending
    assert [n.channel for n in notes] == ["automate_outbox"]
    assert notes[0].pid != connection.connection.info.backend_pid
    assert notify.wait_idle() and notifier._interval == notify.MIN_INTERVAL_SECONDS


def test_a_steady_stream_of_commits_sends_once_per_growing_interval(listener):
    """Commits back to back for 0.4 s: the interval doubles from 2 ms to its maximum, so a few sends
    cover hundreds of commits (a fixed 2 ms sent one per commit or two), and the last one is covered."""
    import time

    from automate import notify

    notifier = _notifier()
    _warm_and_quiet()
    drain_notifies(listener)
    before, emits = notifier.sent, 0
    end = time.monotonic() + 0.4
    while time.monotonic() < end:
        emit_event("order.created", {"i": emits})
        emits += 1
    assert notify.wait_idle()
    sent = notifier.sent - before
    assert notifier._interval == notify.MAX_INTERVAL_SECONDS
    # The schedule bounds the sends whatever the machine's speed (a slow machine sends fewer, never
    # more): the direct first send, one per doubling interval up to the maximum, then one per maximum
    # interval. A fixed MIN_INTERVAL_SECONDS (the old notifier) would send up to 0.4 / 0.002 = 200.
    doublings, step = 0, notify.MIN_INTERVAL_SECONDS
    while step < notify.MAX_INTERVAL_SECONDS:
        doublings, step = doublings + 1, step * 2
    most = 1 + doublings + 0.4 / notify.MAX_INTERVAL_SECONDS + 2  # + 2: the sends around the window's ends
    assert emits > most, (emits, most)  # the stream was dense enough to tell coalescing from none
    assert 1 <= sent <= most, (sent, emits)
    assert len(drain_notifies(listener)) == sent
    # The last commit was covered by a send that started after it: a later commit alone sends again.
    time.sleep(2 * notify.MAX_INTERVAL_SECONDS + 0.01)
    assert _sent_after(lambda: emit_event("order.created", {"last": True})) == 1
    assert notifier._interval == notify.MIN_INTERVAL_SECONDS  # a quiet spell starts it again


def test_a_broken_notifier_connection_is_replaced_and_the_wake_up_still_sent(listener):
    """The server ends the notifier's session: the next commit's NOTIFY goes out on a new connection."""
    from tests.aio.procs import wait_until

    _warm_and_quiet()
    (pid,) = listener.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'automate-notify'"
    ).fetchone()
    listener.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_until(lambda: _notifier_connections(listener) == 0, 5, "the notifier's backend did not end")
    drain_notifies(listener)
    emit_event("order.created", {"after": "terminate"})
    notes = list(listener.notifies(timeout=5, stop_after=1))
    assert [n.channel for n in notes] == ["automate_outbox"] and notes[0].pid != pid

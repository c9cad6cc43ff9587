"""The wake-up signal: after the commit, one per transaction, none on rollback."""

from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections, transaction

from automate.models import Event, OutboxJob
from automate.runtime import emit_event
from tests.conftest import drain_notifies

pytestmark = pytest.mark.django_db(transaction=True)


def test_committed_emit_notifies(listener):
    emit_event("order.created", {"id": 1})
    notes = drain_notifies(listener)
    assert [n.channel for n in notes] == ["automate_outbox"]


def test_notify_is_sent_after_commit_not_inside(listener):
    with transaction.atomic():
        emit_event("order.created", {"id": 1})
        # Still inside the write transaction: nothing may have been sent yet.
        assert drain_notifies(listener, timeout=0.2) == []
    assert len(drain_notifies(listener)) == 1


def test_rollback_sends_nothing_and_stores_nothing(listener):
    with pytest.raises(RuntimeError), transaction.atomic():
        emit_event("order.created", {"id": 1})
        raise RuntimeError("request failed")
    assert drain_notifies(listener) == []
    assert Event.objects.count() == 0
    assert OutboxJob.objects.count() == 0


def test_500_events_in_one_transaction_give_one_notification(listener):
    with transaction.atomic():
        for i in range(500):
            emit_event("order.created", {"i": i})
    assert len(drain_notifies(listener, timeout=0.5)) == 1
    assert OutboxJob.objects.count() == 500


def test_savepoint_rollback_keeps_the_outer_notification(listener):
    with transaction.atomic():
        emit_event("order.created", {"i": 0})
        with pytest.raises(ValueError), transaction.atomic():
            emit_event("order.created", {"i": 1})
            raise ValueError
        emit_event("order.created", {"i": 2})
    assert len(drain_notifies(listener)) == 1
    assert sorted(e.payload["i"] for e in Event.objects.all()) == [0, 2]


def test_savepoint_rollback_of_the_only_emit_sends_nothing(listener):
    with transaction.atomic():
        with pytest.raises(ValueError), transaction.atomic():
            emit_event("order.created", {"i": 1})
            raise ValueError
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
    notes = drain_notifies(listener, timeout=0.5)
    assert 0 < len(notes) <= n_threads * per_thread
    assert OutboxJob.objects.count() == n_threads * per_thread
    # After the burst no wake-up is pending: the last commit was covered by a send that followed it.
    emit_event("order.created", {"last": True})
    assert len(drain_notifies(listener)) == 1


def test_notify_off_sends_nothing(listener, settings):
    settings.DJANGO_AUTOMATE = {"EVENTS": {"notify": "off"}}
    emit_event("order.created", {"id": 1})
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
    assert len(drain_notifies(listener)) == 1
    # Sent from the notifier's own connection, not the emitting request's.
    assert _notifier_connections(listener) == 1
    wait_until(lambda: _notifier_connections(listener) == 0, 5, "the idle notifier connection was not closed")
    emit_event("order.created", {"id": 2})  # reopens on demand
    assert len(drain_notifies(listener)) == 1
    notify.close()
    assert _notifier_connections(listener) == 0


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

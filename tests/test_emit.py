"""emit_event / aemit_event: transactions, validation, deduplication under concurrency, trace context."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import close_old_connections, transaction
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from automate.models import Event, OutboxJob
from automate.runtime import InvalidEventError, aemit_event, emit_event


@pytest.mark.django_db
def test_emit_writes_event_and_job():
    event_id = emit_event("order.created", {"order": {"id": 7}}, source="shop")
    assert uuid.UUID(event_id)
    ev = Event.objects.get(pk=event_id)
    assert (ev.type, ev.payload, ev.source, ev.dedupe_key) == ("order.created", {"order": {"id": 7}}, "shop", None)
    job = OutboxJob.objects.get(event_id=event_id)
    assert (job.kind, job.status, job.attempts, job.max_attempts) == ("event", "PENDING", 0, 4)


@pytest.mark.django_db
def test_max_attempts_follows_max_retries(settings):
    settings.DJANGO_AUTOMATE = {"EXECUTION": {"max_retries": 0}}
    event_id = emit_event("a", {})
    assert OutboxJob.objects.get(event_id=event_id).max_attempts == 1


@pytest.mark.django_db
def test_dedupe_key_returns_the_original_and_stores_nothing():
    first = emit_event("order.paid", {"n": 1}, dedupe_key="pay-1")
    again = emit_event("order.paid", {"n": 2}, dedupe_key="pay-1")
    assert again == first
    assert Event.objects.count() == 1 and OutboxJob.objects.count() == 1
    assert Event.objects.get().payload == {"n": 1}


@pytest.mark.django_db(transaction=True)
def test_dedupe_under_20_concurrent_emitters():
    barrier = threading.Barrier(20)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            with transaction.atomic():
                results.append(emit_event("order.paid", {"i": i}, dedupe_key="same-key"))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 20 and len(set(results)) == 1
    assert Event.objects.filter(dedupe_key="same-key").count() == 1
    assert OutboxJob.objects.count() == 1


BAD = [
    ("", {}, None, "type must be a non-empty"),
    (".order", {}, None, "not a dotted name"),
    ("order..created", {}, None, "not a dotted name"),
    ("order created", {}, None, "not a dotted name"),
    ("x" * 201, {}, None, "at most 200"),
    (None, {}, None, "type must be"),
    ("order.created", [1, 2], None, "payload must be a dict"),
    ("order.created", {"when": object()}, None, "not JSON-serialisable"),
    ("order.created", {"s": "a\x00b"}, None, r"payload\.s: contains a NUL character"),
    ("order.created", {1: "int key"}, None, "payload: object keys must be strings, not int"),
    ("order.created", {"v": float("nan")}, None, r"payload\.v: NaN is not a JSON number"),
    ("order.created", {"v": float("inf")}, None, r"payload\.v: Infinity is not a JSON number"),
    ("order.created", {"v": [1, {"w": -float("inf")}]}, None, r"payload\.v\[1\]\.w: -Infinity is not"),
    ("order.created", {"s": "\ud800"}, None, r"payload\.s: contains a lone surrogate"),
    ("order.created", {"n": 2**64}, None, r"payload\.n: integer outside the 64-bit range"),
    ("order.created", {}, "", "dedupe_key must be a non-empty"),
    ("order.created", {}, "k" * 256, "dedupe_key must be"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("type_", "payload", "dedupe_key", "message"), BAD)
def test_bad_input_is_refused_and_stores_nothing(type_, payload, dedupe_key, message):
    emit_event("ok.before", {"keep": True})
    with pytest.raises(InvalidEventError, match=message):
        emit_event(type_, payload, dedupe_key)
    assert list(Event.objects.values_list("type", flat=True)) == ["ok.before"]
    assert OutboxJob.objects.count() == 1


@pytest.mark.django_db
def test_nan_is_refused_not_stored_as_null():
    """orjson writes NaN as null: before the check, {"v": NaN} was stored as {"v": null} without a word."""
    with pytest.raises(InvalidEventError) as err:
        emit_event("x", {"v": float("nan")})
    assert str(err.value) == "payload.v: NaN is not a JSON number (JSON has no NaN or Infinity)"
    assert not Event.objects.exists() and not OutboxJob.objects.exists()


@pytest.mark.django_db
def test_a_refused_duplicate_stores_nothing_either():
    emit_event("x", {"v": 1}, dedupe_key="k")
    with pytest.raises(InvalidEventError, match="NaN"):
        emit_event("x", {"v": float("nan")}, dedupe_key="k2")
    assert list(Event.objects.values_list("payload", flat=True)) == [{"v": 1}]


@pytest.mark.django_db
def test_payload_nested_deeper_than_100_levels_is_refused():
    deep: dict = {}
    node = deep
    for _ in range(100):
        node["d"] = node = {}
    with pytest.raises(InvalidEventError, match="nested deeper than 100 levels"):
        emit_event("x", deep)
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_datetimes_and_uuids_are_still_stored_as_strings():
    import datetime

    when = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
    event_id = emit_event("x", {"at": when, "id": uuid.UUID(int=1)})
    assert Event.objects.get(pk=event_id).payload == {"at": "2024-05-01T12:00:00+00:00", "id": str(uuid.UUID(int=1))}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
async def test_aemit_event_refuses_nan_and_infinity(bad, async_db_cleanup):
    with pytest.raises(InvalidEventError, match=r"payload\.order\.total: -?(NaN|Infinity) is not a JSON number"):
        await aemit_event("order.created", {"order": {"total": bad}})
    assert not await Event.objects.aexists()


@pytest.mark.django_db
def test_invalid_event_error_is_a_value_error():
    with pytest.raises(ValueError):
        emit_event("", {})


@pytest.mark.django_db
def test_payload_size_limit_is_a_setting(settings):
    settings.DJANGO_AUTOMATE = {"EVENTS": {"max_payload_bytes": 64}}
    emit_event("a", {"s": "x" * 40})
    with pytest.raises(InvalidEventError, match=r"EVENTS.max_payload_bytes"):
        emit_event("a", {"s": "x" * 64})
    assert Event.objects.count() == 1


@pytest.mark.django_db
def test_default_payload_limit_is_one_mib():
    with pytest.raises(InvalidEventError, match="limit is 1048576"):
        emit_event("a", {"s": "x" * (1024 * 1024)})


@pytest.fixture(scope="module")
def tracer():
    provider = TracerProvider()
    return provider.get_tracer("tests")


@pytest.mark.django_db
def test_trace_context_is_stored(tracer):
    with tracer.start_as_current_span("request") as span:
        event_id = emit_event("order.created", {})
        expected_trace = format(span.get_span_context().trace_id, "032x")
        expected_span = format(span.get_span_context().span_id, "016x")
    ev = Event.objects.get(pk=event_id)
    version, trace_id, span_id, flags = ev.traceparent.split("-")
    assert (version, trace_id, span_id) == ("00", expected_trace, expected_span)
    assert int(flags, 16) & 1  # sampled


@pytest.mark.django_db
def test_no_trace_context_outside_a_span():
    assert trace.get_current_span().get_span_context().is_valid is False
    ev = Event.objects.get(pk=emit_event("order.created", {}))
    assert ev.traceparent == ""


@pytest.mark.django_db(transaction=True)
async def test_aemit_event_from_async_code(tracer, async_db_cleanup):
    with tracer.start_as_current_span("async-view") as span:
        event_id = await aemit_event("order.created", {"async": True}, dedupe_key="async-1")
        trace_hex = format(span.get_span_context().trace_id, "032x")
    assert await aemit_event("order.created", {}, dedupe_key="async-1") == event_id
    ev = await Event.objects.aget(pk=event_id)
    assert ev.payload == {"async": True}
    assert trace_hex in ev.traceparent


# -- the statement on Django's connection (libpq's PQexecPrepared, psycopg's cursor where it must) --------


def _emit_statements() -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements WHERE statement LIKE '%%INSERT INTO automate_event%%'")
        return [name for (name,) in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_emit_in_autocommit_runs_its_own_prepared_statement():
    emit_event("order.created", {"i": 1})
    emit_event("order.created", {"i": 2})
    assert [name.startswith("automate_emit_") for name in _emit_statements()] == [True]
    assert Event.objects.count() == 2 and OutboxJob.objects.count() == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("query_first", [False, True], ids=["emit-begins-the-transaction", "after-a-query"])
def test_emit_joins_the_callers_transaction_and_rolls_back_with_it(query_first):
    """psycopg sends an atomic block's BEGIN with its first statement: an emit that is that statement
    must not run on its own (autocommitted) before it; after another query the block is open already."""
    from django.db import connection

    with pytest.raises(RuntimeError), transaction.atomic():
        if query_first:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        emit_event("order.created", {"i": 1})
        emit_event("order.created", {"i": 2})
        raise RuntimeError("the request failed")
    assert not Event.objects.exists() and not OutboxJob.objects.exists()
    with transaction.atomic():
        emit_event("order.created", {"i": 3})
    assert list(Event.objects.values_list("payload", flat=True)) == [{"i": 3}]


@pytest.mark.django_db(transaction=True)
def test_emit_prepares_again_after_deallocate_all_in_autocommit():
    from django.db import connection

    emit_event("order.created", {"i": 1})
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    assert _emit_statements() == []
    emit_event("order.created", {"i": 2})  # the statement is gone: prepared again, nothing aborted
    assert len(_emit_statements()) == 1
    assert Event.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_with_psycopg_preparing_statements_a_savepoint_rollback_does_not_break_the_next_emit():
    """With a prepare_threshold on Django's connection psycopg runs DEALLOCATE ALL after a rollback (also
    of a savepoint): the emit then goes through psycopg's cursor, whose statement cache knows it."""
    from django.db import connection

    connection.ensure_connection()
    connection.connection.prepare_threshold = 0
    try:
        with transaction.atomic():
            emit_event("order.created", {"i": 1})
            with pytest.raises(ValueError), transaction.atomic():
                emit_event("order.created", {"i": 2})
                raise ValueError
            emit_event("order.created", {"i": 3})
    finally:
        connection.close()  # (psycopg keeps its statements: a fresh connection for the next tests)
    assert sorted(e.payload["i"] for e in Event.objects.all()) == [1, 3]
    assert OutboxJob.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_database_errors_reach_the_caller_as_djangos():
    from django.db import DatabaseError, connection

    with transaction.atomic():
        with pytest.raises(DatabaseError), connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")
        with pytest.raises(DatabaseError, match="current transaction is aborted"):
            emit_event("order.created", {"i": 1})
        transaction.set_rollback(True)
    assert not Event.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_dedupe_key_without_prepared_statements(settings):
    settings.DJANGO_AUTOMATE = {"EVENTS": {"prepared_statements": False}}
    first = emit_event("order.paid", {"n": 1}, dedupe_key="pay-1")
    assert emit_event("order.paid", {"n": 2}, dedupe_key="pay-1") == first
    assert Event.objects.count() == 1 and _emit_statements() == []

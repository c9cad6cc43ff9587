"""Model-change events on real tables (tests.testapp): payloads, redaction, transactions, bulk operations."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from automate import model_events
from automate.models import Event, OutboxJob
from automate.runtime import emit_event
from tests.conftest import drain_notifies
from tests.testapp.models import Customer, Order

FIELDS = ["id", "customer", "total", "status", "api_token", "placed_at"]


@pytest.fixture
def orders() -> Iterator[model_events.ModelEvents]:
    registration = model_events.register(Order, fields=FIELDS, redact=["placed_at"])
    yield registration
    model_events.unregister(Order)


def events(action: str | None = None) -> list[Event]:
    qs = Event.objects.filter(type__startswith="testapp.order.").order_by("outboxjob__id")  # emit order
    if action:
        qs = qs.filter(type=f"testapp.order.{action}")
    return list(qs)


@pytest.mark.django_db
def test_created_updated_deleted(orders):
    customer = Customer.objects.create(name="Ada")
    with transaction.atomic():
        order = Order.objects.create(customer=customer, total=Decimal("120.50"), api_token="tok-123456",
                                     placed_at=dt.datetime(2024, 5, 1, tzinfo=dt.UTC))
    [created] = events()
    assert (created.type, created.source) == ("testapp.order.created", "model_events")
    assert created.payload == {
        "model": "testapp.order",
        "pk": order.pk,
        "fields": {
            "id": order.pk, "customer": customer.pk, "total": "120.50", "status": "new",
            "api_token": "[REDACTED]", "placed_at": "[REDACTED]",
        },
    }
    assert OutboxJob.objects.filter(event=created).count() == 1

    with transaction.atomic():
        order.status = "paid"
        order.total = Decimal("99.00")
        order.save()
    [updated] = events("updated")
    assert updated.payload["changes"] == {
        "status": {"old": "new", "new": "paid"},
        "total": {"old": "120.50", "new": "99.00"},
    }
    assert updated.payload["fields"]["status"] == "paid"

    pk = order.pk
    with transaction.atomic():
        order.delete()
    [deleted] = events("deleted")
    assert deleted.payload["pk"] == pk and deleted.payload["fields"]["status"] == "paid"


@pytest.mark.django_db
def test_a_secret_named_field_is_redacted_in_changes(orders):
    order = Order.objects.create(total=1, api_token="old-token-value")
    order.api_token = "new-token-value"
    order.save()
    [updated] = events("updated")
    assert updated.payload["changes"] == {"api_token": "[REDACTED]"}
    assert "token-value" not in str(updated.payload)


@pytest.mark.django_db
def test_redact_option_hides_a_field_with_an_innocent_name(orders):
    order = Order.objects.create(total=1)
    order.placed_at = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    order.save()
    [updated] = events("updated")
    assert updated.payload["changes"] == {"placed_at": {"old": "[REDACTED]", "new": "[REDACTED]"}}


@pytest.mark.django_db
def test_two_updates_give_two_events_with_the_stored_old_values(orders):
    order = Order.objects.create(total=1)
    stale = Order.objects.get(pk=order.pk)  # loaded before the first update
    order.status = "paid"
    order.save()
    stale.status = "shipped"
    stale.save()
    first, second = events("updated")
    assert first.payload["changes"] == {"status": {"old": "new", "new": "paid"}}
    # The old value is the stored row's, not the stale instance's.
    assert second.payload["changes"] == {"status": {"old": "paid", "new": "shipped"}}


@pytest.mark.django_db
def test_a_save_that_changes_nothing_emits_nothing_and_costs_one_select(orders):
    order = Order.objects.create(total=1)
    with CaptureQueriesContext(connection) as queries:
        order.save()
    assert events("updated") == []
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert len(selects) == 1 and "testapp_order" in selects[0]


@pytest.mark.django_db
def test_update_fields_compares_only_the_written_fields(orders):
    order = Order.objects.create(total=1)
    order.status = "paid"
    order.total = Decimal("5.00")  # changed in memory, not written
    order.save(update_fields=["status"])
    [updated] = events("updated")
    assert updated.payload["changes"] == {"status": {"old": "new", "new": "paid"}}
    assert updated.payload["fields"]["total"] == "1.00"


@pytest.mark.django_db
def test_unchosen_fields_are_neither_in_the_payload_nor_a_change(orders):
    order = Order.objects.create(total=1, note="first")
    assert "note" not in events("created")[0].payload["fields"]
    order.note = "second"
    order.save()
    assert events("updated") == []


@pytest.mark.django_db(transaction=True)
def test_rollback_removes_the_change_and_the_event(orders, listener):
    order = Order.objects.create(total=1)
    drain_notifies(listener)
    before = set(Event.objects.values_list("id", flat=True))
    with pytest.raises(RuntimeError), transaction.atomic():
        Order.objects.create(total=2)
        order.status = "paid"
        order.save()
        Order.objects.get(pk=order.pk).delete()
        assert len(events()) == 4  # created, created, updated, deleted: written in the transaction
        raise RuntimeError("roll back")
    assert set(Event.objects.values_list("id", flat=True)) == before
    assert Order.objects.get(pk=order.pk).status == "new" and Order.objects.count() == 1
    assert drain_notifies(listener, timeout=0.5) == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_updates_each_see_the_true_old_value(orders):
    order = Order.objects.create(total=0)
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            barrier.wait()
            with transaction.atomic():
                row = Order.objects.get(pk=order.pk)  # stale by the time it saves, but for one thread
                row.total = F("total") + 1  # no lock taken here: pre_save's SELECT ... FOR UPDATE serialises
                row.save()
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=bump) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    changes = sorted((e.payload["changes"]["total"]["old"], e.payload["changes"]["total"]["new"]) for e in events("updated"))
    assert changes == [(f"{i}.00", f"{i + 1}.00") for i in range(6)]


@pytest.mark.django_db
def test_bulk_operations_send_no_signals_and_the_documented_alternative(orders):
    Order.objects.bulk_create([Order(total=1), Order(total=2)])
    assert events() == []
    Order.objects.update(status="paid")
    assert events() == []
    rows = list(Order.objects.all())
    for row in rows:
        row.status = "void"
    Order.objects.bulk_update(rows, ["status"])
    assert events() == []
    # The README's alternative: emit yourself, in the same transaction as the bulk write.
    with transaction.atomic():
        n = Order.objects.filter(status="void").update(status="archived")
        emit_event("testapp.order.bulk_archived", {"count": n})
    assert Event.objects.get(type="testapp.order.bulk_archived").payload == {"count": 2}
    # queryset.delete() does send post_delete for every row.
    Order.objects.all().delete()
    assert len(events("deleted")) == 2


@pytest.mark.django_db
def test_only_the_chosen_events():
    model_events.register(Order, fields=["status"], events=["deleted"])
    try:
        order = Order.objects.create(total=1)
        order.status = "paid"
        order.save()
        assert events() == []
        order.delete()
        assert [e.type for e in events()] == ["testapp.order.deleted"]
    finally:
        model_events.unregister(Order)


@pytest.mark.django_db
def test_unregister_stops_the_events():
    model_events.register(Order)
    assert model_events.unregister(Order) is True
    assert model_events.unregister(Order) is False
    Order.objects.create(total=1)
    assert events() == []


@pytest.mark.django_db
def test_default_fields_are_every_concrete_field():
    model_events.register(Order)
    try:
        Order.objects.create(total=1, note="n")
        assert set(events("created")[0].payload["fields"]) == {
            "id", "customer", "total", "status", "api_token", "note", "placed_at"
        }
    finally:
        model_events.unregister(Order)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fields": ["id", "totl"]}, r"fields: 'totl' is not a concrete field of testapp.Order \(known: api_token"),
        ({"fields": "status"}, "fields must be a list of names"),
        ({"fields": []}, "fields is empty"),
        ({"fields": ["customer", "customer_id"]}, "fields lists a field twice"),
        ({"fields": ["status"], "redact": ["note"]}, r"redact: \['note'\] are not among the chosen fields"),
        ({"events": ["created", "archived"]}, "events must be a non-empty list of created, updated, deleted"),
        ({"events": []}, "events must be a non-empty list"),
    ],
)
def test_bad_registrations_name_the_problem(kwargs, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        model_events.register(Order, **kwargs)
    assert Order not in model_events.registered()


def test_registering_twice_or_a_non_model_is_refused():
    model_events.register(Order)
    try:
        with pytest.raises(ImproperlyConfigured, match=r"register\(testapp.Order\): the model is already registered"):
            model_events.register(Order)
    finally:
        model_events.unregister(Order)
    with pytest.raises(ImproperlyConfigured, match="is not a concrete Django model"):
        model_events.register(dict)  # type: ignore[arg-type]

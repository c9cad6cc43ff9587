"""The example project's views over real HTTP: example/project served by uvicorn (ASGI) in a subprocess,
on the test database (DATABASE_URL), driven with httpx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal

import httpx
import psycopg
import pytest
from django.db import connection

from automate.models import Event, OutboxJob
from automate.webhooks import sign
from tests.conftest import conninfo, drain_notifies
from tests.live_server import ROOT, UvicornServer

EXAMPLE = ROOT / "example"
SECRET = "example-shop-secret-0d9a"


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UvicornServer]:
    env = {"DATABASE_URL": conninfo(), "DJANGO_SETTINGS_MODULE": "project.settings", "AUTOMATE_SHOP_WEBHOOK": SECRET}
    # The example's own table (demo_order) is created in the test database by the example's migrations.
    subprocess.run([sys.executable, "manage.py", "migrate", "demo", "--verbosity", "0"], cwd=EXAMPLE,
                   env={**os.environ, **env}, check=True, timeout=120)
    srv = UvicornServer("project.asgi:application", cwd=EXAMPLE, env=env,
                        log=tmp_path_factory.mktemp("views") / "uvicorn.log")
    yield srv
    srv.stop()
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS demo_order")
        cursor.execute("DELETE FROM django_migrations WHERE app = 'demo'")


@pytest.fixture
def client(server: UvicornServer, transactional_db: None) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c
    with connection.cursor() as cursor:  # not a model of the test project: the flush does not empty it
        cursor.execute("TRUNCATE demo_order")


def orders() -> list[tuple[int, Decimal]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, total FROM demo_order ORDER BY id")
        return list(cursor.fetchall())


@pytest.mark.parametrize(("path", "source"), [("/events/sync/", "example.sync"), ("/events/async/", "example.async")])
def test_views_emit_an_event_and_wake_the_worker(client, listener, path, source):
    drain_notifies(listener)
    response = client.post(path, json={"order": {"id": 1}})
    assert response.status_code == 202, response.text
    event = Event.objects.get(pk=response.json()["event_id"])
    assert (event.type, event.source, event.payload) == ("demo.ping", source, {"order": {"id": 1}})
    assert OutboxJob.objects.get(event=event).status == "PENDING"
    assert [n.channel for n in listener.notifies(timeout=10, stop_after=1)] == ["automate_outbox"]


@pytest.mark.parametrize("path", ["/events/sync/", "/events/async/", "/orders/"])
def test_views_refuse_a_body_that_is_not_a_json_object(client, path):
    for body in (b"nope", b"[1]"):
        response = client.post(path, content=body)
        assert (response.status_code, response.json()) == (400, {"error": "the body must be a JSON object"})
    assert not Event.objects.filter(source__startswith="example").exists()


def test_sync_view_rolled_back_emits_nothing(client, listener):
    drain_notifies(listener)
    response = client.post("/events/sync/", json={"fail": True})
    assert (response.status_code, response.json()) == (422, {"error": "rolled back"})
    assert not Event.objects.filter(type="demo.ping").exists() and not OutboxJob.objects.exists()
    assert drain_notifies(listener, timeout=1.0) == []


def test_async_view_ties_the_event_to_its_own_write(client, listener):
    drain_notifies(listener)
    response = client.post("/orders/", json={"total": 120})
    assert response.status_code == 201, response.text
    body = response.json()
    assert orders() == [(body["order_id"], Decimal("120.00"))]
    event = Event.objects.get(pk=body["event_id"])
    assert event.payload == {"order": {"id": body["order_id"], "total": 120.0}}
    # The example registers model events for its Order: written in the same transaction.
    model_event = Event.objects.get(type="demo.order.created")
    assert model_event.payload["fields"] == {"id": body["order_id"], "total": "120.00", "status": "new"}
    assert [n.channel for n in listener.notifies(timeout=10, stop_after=1)] == ["automate_outbox"]


def test_async_view_rolled_back_stores_neither_the_row_nor_the_events(client, listener):
    drain_notifies(listener)
    response = client.post("/orders/", json={"total": 5, "fail": True})
    assert (response.status_code, response.json()) == (422, {"error": "rolled back"})
    assert orders() == []
    assert not Event.objects.exists() and not OutboxJob.objects.exists()
    assert drain_notifies(listener, timeout=1.0) == []


@pytest.mark.parametrize("total", [None, "abc", "NaN", "Infinity", -1, 10**9])
def test_bad_totals_are_refused(client, total):
    response = client.post("/orders/", json={"total": total})
    assert response.status_code == 400 and "total must be" in response.json()["error"]
    assert orders() == [] and not Event.objects.exists()


def test_the_example_serves_signed_webhooks(client):
    body = json.dumps({"order": 3}).encode()
    response = client.post("/automate/webhooks/shop/", content=body, headers=sign(body, SECRET))
    assert response.status_code == 202, response.text
    assert Event.objects.get(pk=response.json()["event_id"]).type == "shop.webhook"
    bad = client.post("/automate/webhooks/shop/", content=body, headers=sign(body, "wrong"))
    assert bad.status_code == 401


def test_listener_sees_other_connections(pg_conninfo, listener):
    """Control for the 'no NOTIFY' assertions above: a NOTIFY from another connection does arrive."""
    with psycopg.connect(pg_conninfo, autocommit=True) as other:
        other.execute("NOTIFY automate_outbox")
    assert [n.channel for n in listener.notifies(timeout=10, stop_after=1)] == ["automate_outbox"]

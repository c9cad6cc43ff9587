"""Signed webhooks over real HTTP: the tests.testapp URLconf served by uvicorn in a subprocess, on the
test database (sources and limits in tests/testapp/server_settings.py: window 60 s, 4096 bytes)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from automate.models import AuditLogEntry, Event, OutboxJob
from automate.webhooks import sign
from automate.webhooks.signing import SignatureError, signature, verify
from tests.conftest import conninfo
from tests.live_server import ROOT, UvicornServer

SHOP_SECRET = "whsec-shop-7d1f0c2a9b"
CRM_SECRET = "whsec-crm-55aa01"


@pytest.fixture(scope="module")
def server(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UvicornServer]:
    srv = UvicornServer(
        "django.core.asgi:get_asgi_application",
        cwd=ROOT,
        env={
            "DJANGO_SETTINGS_MODULE": "tests.testapp.server_settings",
            "AUTOMATE_TEST_WORKER_DATABASE_URL": conninfo(),
            "AUTOMATE_SHOP_WEBHOOK": SHOP_SECRET,
            "AUTOMATE_CRM_WEBHOOK": CRM_SECRET,
            "PYTHONPATH": str(ROOT),
            "UVICORN_FACTORY": "true",
        },
        log=tmp_path_factory.mktemp("webhooks") / "uvicorn.log",
    )
    yield srv
    srv.stop()


@pytest.fixture
def client(server: UvicornServer, transactional_db: None) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def post(client: httpx.Client, source: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return client.post(f"/automate/webhooks/{source}/", content=body, headers=headers)


# Assertions look at webhook rows only: another test module may have committed rows of its own.
def rejections():
    return AuditLogEntry.objects.filter(action="webhook.rejected")


def webhook_events():
    return Event.objects.filter(type__in=["shop.webhook", "crm.contact", "broken.webhook"])


def only_rejection() -> AuditLogEntry:
    entries = list(rejections())
    assert len(entries) == 1, entries
    entry = entries[0]
    assert (entry.actor, entry.action) == ("webhook", "webhook.rejected")
    return entry


# -- signing (pure) -------------------------------------------------------------------------------------


def test_sign_returns_the_headers_and_verify_accepts_them():
    body = b'{"order": 1}'
    headers = sign(body, "s3cret", timestamp=1_700_000_000)
    assert set(headers) == {"X-Automate-Timestamp", "X-Automate-Signature", "X-Automate-Delivery", "Content-Type"}
    assert headers["X-Automate-Timestamp"] == "1700000000"
    assert uuid.UUID(headers["X-Automate-Delivery"])
    assert headers["X-Automate-Signature"] == "v1=" + signature(body, "s3cret", 1_700_000_000, headers["X-Automate-Delivery"])
    assert sign(body, "s3cret")["X-Automate-Delivery"] != sign(body, "s3cret")["X-Automate-Delivery"]
    ts = verify(
        body, "s3cret", timestamp=headers["X-Automate-Timestamp"], signature_header=headers["X-Automate-Signature"],
        delivery_id=headers["X-Automate-Delivery"], replay_window_seconds=300, now=1_700_000_100,
    )
    assert ts == 1_700_000_000


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"body": b'{"order": 2}'}, "bad signature"),
        ({"secret": "other"}, "bad signature"),
        ({"delivery_id": "another-delivery"}, "bad signature"),
        ({"timestamp": "1700000001"}, "bad signature"),
        ({"signature_header": "v1=" + "0" * 64}, "bad signature"),
        ({"signature_header": "v1=xyz"}, "malformed signature"),
        ({"signature_header": "v2=" + "0" * 64}, "malformed signature"),
        ({"signature_header": None}, "missing signature"),
        ({"timestamp": None}, "missing signature"),
        ({"timestamp": "-5"}, "malformed timestamp"),
        ({"delivery_id": None}, "missing delivery id"),
        ({"delivery_id": "bad id with spaces"}, "malformed delivery id"),
        ({"now": 1_700_000_000 + 301}, "timestamp outside the replay window"),
        ({"now": 1_700_000_000 - 301}, "timestamp outside the replay window"),
    ],
)
def test_verify_refuses(change, reason):
    body = b'{"order": 1}'
    headers = sign(body, "s3cret", timestamp=1_700_000_000, delivery_id="d-1")
    args = {
        "body": body, "secret": "s3cret", "timestamp": headers["X-Automate-Timestamp"],
        "signature_header": headers["X-Automate-Signature"], "delivery_id": "d-1", "now": 1_700_000_000 + 300,
    }
    args.update(change)
    with pytest.raises(SignatureError) as info:
        verify(args.pop("body"), args.pop("secret"), replay_window_seconds=300, **args)
    assert info.value.reason == reason
    assert info.value.status == (400 if "delivery id" in reason else 401)
    assert "s3cret" not in str(info.value) and headers["X-Automate-Signature"][3:] not in str(info.value)


def test_verify_accepts_any_of_several_signatures_for_secret_rotation():
    body = b"{}"
    new = sign(body, "new-secret", timestamp=1_700_000_000, delivery_id="d")["X-Automate-Signature"]
    old = sign(body, "old-secret", timestamp=1_700_000_000, delivery_id="d")["X-Automate-Signature"]
    for secret in ("new-secret", "old-secret"):
        verify(body, secret, timestamp="1700000000", signature_header=f"{old}, {new}", delivery_id="d",
               replay_window_seconds=60, now=1_700_000_000)


def test_signing_module_imports_no_django():
    code = "import sys, automate.webhooks.signing; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_readme_openssl_recipe_computes_the_same_signature(tmp_path):
    body = b'{"order": {"id": 42, "total": 120}}'
    (tmp_path / "body.json").write_bytes(body)
    script = (
        'SECRET=s3cret; TS=1700000000; ID=3f1c5a52-delivery; '
        '{ printf "%s.%s." "$TS" "$ID"; cat body.json; } | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d" " -f1'
    )
    out = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == signature(body, "s3cret", 1_700_000_000, "3f1c5a52-delivery")


# -- the view, over HTTP ----------------------------------------------------------------------------------


def test_a_signed_delivery_is_stored_as_an_event(client):
    body = json.dumps({"order": {"id": 42, "total": 120}}).encode()
    headers = sign(body, SHOP_SECRET)
    response = post(client, "shop", body, headers)
    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]
    event = Event.objects.get(pk=event_id)
    assert (event.type, event.source, event.payload) == ("shop.webhook", "shop", {"order": {"id": 42, "total": 120}})
    assert event.dedupe_key == f"webhook:shop:{headers['X-Automate-Delivery']}"
    assert OutboxJob.objects.get(event=event).status == "PENDING"
    assert not rejections().exists()


def test_each_source_has_its_own_secret_and_event_type(client):
    body = b'{"contact": "c-1"}'
    assert post(client, "crm", body, sign(body, SHOP_SECRET)).status_code == 401
    rejections().delete()
    response = post(client, "crm", body, sign(body, CRM_SECRET))
    assert response.status_code == 202
    assert Event.objects.get(pk=response.json()["event_id"]).type == "crm.contact"


BODY = b'{"order": 1}'
BIG = json.dumps({"pad": "x" * 4100}).encode()


def _signed(body: bytes = BODY, secret: str = SHOP_SECRET, **kw: object) -> tuple[bytes, dict[str, str]]:
    return body, sign(body, secret, **kw)  # type: ignore[arg-type]


def _without(name: str) -> tuple[bytes, dict[str, str]]:
    body, headers = _signed()
    del headers[name]
    return body, headers


def _replace(name: str, value: str, body: bytes = BODY) -> tuple[bytes, dict[str, str]]:
    _, headers = _signed()
    return body, {**headers, name: value}


# Each case builds its request when the test runs (a signature made at collection time would go stale).
BAD_REQUESTS = [
    ("no signature", lambda: _without("X-Automate-Signature"), 401, "missing signature"),
    ("no timestamp", lambda: _without("X-Automate-Timestamp"), 401, "missing signature"),
    ("wrong secret", lambda: _signed(secret="guessed"), 401, "bad signature"),
    ("tampered body", lambda: _replace("Content-Type", "application/json", body=b'{"order": 2}'), 401, "bad signature"),
    ("replayed under a new delivery id", lambda: _replace("X-Automate-Delivery", str(uuid.uuid4())), 401, "bad signature"),
    ("malformed signature", lambda: _replace("X-Automate-Signature", "sha256=abc"), 401, "malformed signature"),
    ("stale", lambda: _signed(timestamp=int(time.time()) - 120), 401, "timestamp outside the replay window"),
    ("future", lambda: _signed(timestamp=int(time.time()) + 120), 401, "timestamp outside the replay window"),
    ("no delivery id", lambda: _without("X-Automate-Delivery"), 400, "missing delivery id"),
    ("malformed delivery id", lambda: _replace("X-Automate-Delivery", "a/b"), 400, "malformed delivery id"),
    ("too large", lambda: _signed(BIG), 413, "body too large"),
    ("not json", lambda: _signed(b"order=1"), 400, "body is not JSON"),
    ("a json array", lambda: _signed(b"[1, 2]"), 400, "body is not a JSON object"),
    ("NaN", lambda: _signed(b'{"v": NaN}'), 400, "body is not JSON"),
    (
        "a NUL in a string",
        lambda: _signed(b'{"s": "a\\u0000b"}'),
        400,
        "invalid payload: payload.s: contains a NUL character (\\u0000), which JSONB cannot store",
    ),
]


@pytest.mark.parametrize(("case", "build", "status", "reason"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_refused_deliveries_are_audited_and_store_nothing(client, case, build, status, reason):
    body, headers = build()
    response = post(client, "shop", body, headers)
    assert (response.status_code, response.json()) == (status, {"error": reason}), response.text
    assert not webhook_events().exists() and not OutboxJob.objects.filter(event__in=webhook_events()).exists()
    entry = only_rejection()
    assert entry.resource == "webhook:shop"
    assert entry.details == {"source": "shop", "reason": reason, "remote_addr": "127.0.0.1"}
    stored = json.dumps(entry.details)
    assert SHOP_SECRET not in stored
    if "X-Automate-Signature" in headers:
        assert headers["X-Automate-Signature"].split("=", 1)[1] not in stored


def test_a_chunked_body_over_the_limit_is_refused(client):
    chunks = [b'{"pad": "', b"x" * 3000, b"x" * 3000, b'"}']
    body = b"".join(chunks)
    response = client.post("/automate/webhooks/shop/", content=iter(chunks), headers=sign(body, SHOP_SECRET))
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert (response.status_code, response.json()) == (413, {"error": "body too large"})
    assert not webhook_events().exists()
    assert only_rejection().details["reason"] == "body too large"


def test_a_chunked_body_under_the_limit_is_accepted(client):
    chunks = [b'{"n": ', b"1", b"}"]
    response = client.post("/automate/webhooks/shop/", content=iter(chunks), headers=sign(b'{"n": 1}', SHOP_SECRET))
    assert response.status_code == 202
    assert Event.objects.get(pk=response.json()["event_id"]).payload == {"n": 1}


def test_a_repeated_delivery_is_refused_as_duplicate(client):
    body = b'{"order": 5}'
    headers = sign(body, SHOP_SECRET)
    first = post(client, "shop", body, headers)
    assert first.status_code == 202
    again = post(client, "shop", body, headers)
    assert (again.status_code, again.json()) == (400, {"error": "duplicate delivery", "event_id": first.json()["event_id"]})
    assert webhook_events().count() == 1 and OutboxJob.objects.filter(event__in=webhook_events()).count() == 1
    assert only_rejection().details["reason"] == "duplicate delivery"


def test_the_same_delivery_id_from_another_source_is_not_a_duplicate(client):
    body = b"{}"
    shop = post(client, "shop", body, sign(body, SHOP_SECRET, delivery_id="d-77"))
    crm = post(client, "crm", body, sign(body, CRM_SECRET, delivery_id="d-77"))
    assert (shop.status_code, crm.status_code) == (202, 202)
    assert shop.json()["event_id"] != crm.json()["event_id"]


def test_concurrent_copies_of_one_delivery_store_one_event(server, transactional_db):
    body = b'{"order": 9}'
    headers = sign(body, SHOP_SECRET)

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            return await asyncio.gather(*(c.post("/automate/webhooks/shop/", content=body, headers=headers) for _ in range(8)))

    responses = asyncio.run(send_all())
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] + [400] * 7, [r.text for r in responses]
    accepted = next(r for r in responses if r.status_code == 202).json()["event_id"]
    assert all(r.json() == {"error": "duplicate delivery", "event_id": accepted} for r in responses if r.status_code == 400)
    assert webhook_events().count() == 1
    assert rejections().filter(details__reason="duplicate delivery").count() == 7


def test_unknown_source_is_404_and_audited(client):
    body = b"{}"
    response = post(client, "nope", body, sign(body, SHOP_SECRET))
    assert (response.status_code, response.json()) == (404, {"error": "unknown source"})
    assert only_rejection().details == {"source": "nope", "reason": "unknown source", "remote_addr": "127.0.0.1"}
    assert not webhook_events().exists()


def test_a_source_whose_secret_is_missing_answers_503(client):
    body = b"{}"
    response = post(client, "broken", body, sign(body, "anything"))
    assert (response.status_code, response.json()) == (503, {"error": "signing secret unavailable"})
    assert only_rejection().details["reason"] == "signing secret unavailable"
    assert not webhook_events().exists()


def test_only_post_is_served(client):
    assert client.get("/automate/webhooks/shop/").status_code == 405
    assert not rejections().exists() and not webhook_events().exists()

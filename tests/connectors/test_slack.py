"""The ``slack`` connector against a Slack-style receiver: records the posted JSON and answers "ok"."""

from __future__ import annotations

import pytest

from automate.connectors import PermanentStepError, TransientStepError, get_connector
from automate.connectors.http import aclose_clients
from automate.core.errors import RetryLater, SpecError
from automate.models import AuditLogEntry, ExecutionRun, StepRun
from automate.runtime import emit_event
from automate.workflows import publish
from tests.connectors.http_support import Audits, automate, drain, make_ctx, worker
from tests.servers import LocalServer, Reply

SLACK = get_connector("slack")
HOOK = "/services/T0001/B0002/hook-secret-xyz"
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Shipped*"}}]


def slack_ok(_request) -> Reply:
    return Reply(200, "ok", headers={"Content-Type": "text/html"})


@pytest.fixture
def receiver():
    with LocalServer(default=slack_ok) as s, automate(allow=["127.0.0.1"]):
        yield s


@pytest.fixture
async def closing():
    yield
    await aclose_clients()


async def test_posts_text_and_blocks_as_json(receiver, closing):
    out = await SLACK.run({"webhook_url": receiver.url(HOOK), "text": "Order 7 shipped", "blocks": BLOCKS}, make_ctx())
    assert out == {"status": 200, "ok": True}
    (posted,) = receiver.requests
    assert (posted.method, posted.path) == ("POST", HOOK)
    assert posted.json == {"text": "Order 7 shipped", "blocks": BLOCKS}
    assert posted.headers["content-type"] == "application/json"
    assert posted.headers["idempotency-key"] == "run-1:call"


@pytest.mark.parametrize(
    ("reply", "kind", "message"),
    [
        (Reply(500, "oops"), TransientStepError, "slack webhook: HTTP 500 Internal Server Error"),
        (Reply(429, "rate_limited", headers={"Retry-After": "30"}), RetryLater, "slack webhook: HTTP 429 Too Many Requests"),
        (Reply(404, "channel_not_found"), PermanentStepError, "slack webhook: HTTP 404 Not Found (channel_not_found)"),
        (Reply(400, "invalid_payload"), PermanentStepError, "slack webhook: HTTP 400 Bad Request (invalid_payload)"),
        (Reply(403, "<html>" + HOOK + "</html>"), PermanentStepError, "slack webhook: HTTP 403 Forbidden"),
    ],
)
async def test_failures_name_the_webhook_never_its_url(reply, kind, message, receiver, closing):
    receiver.route(HOOK, reply)
    with pytest.raises(kind) as info:
        await SLACK.run({"webhook_url": receiver.url(HOOK), "text": "hi"}, make_ctx())
    assert str(info.value) == message or str(info.value).startswith(message)
    assert "hook-secret" not in str(info.value) and "T0001" not in str(info.value)


async def test_an_internal_webhook_is_blocked_without_quoting_it(closing):
    audits = Audits()
    with LocalServer(default=slack_ok) as receiver, automate():
        with pytest.raises(PermanentStepError) as info:
            await SLACK.run({"webhook_url": receiver.url(HOOK), "text": "hi"}, make_ctx(audits))
        assert receiver.requests == []
    assert str(info.value).startswith("slack webhook: blocked by the SSRF policy: 127.0.0.1 is loopback")
    assert "hook-secret" not in str(info.value) and "hook-secret" not in repr(audits)
    assert audits.actions() == ["policy.ssrf_denied"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"text": "hi"}, "steps[0].config.webhook_url: required"),
        ({"webhook_url": "$secret:SLACK_WEBHOOK"}, "steps[0].config: give 'text', 'blocks' or both"),
        ({"webhook_url": "hooks.slack.com/x", "text": "hi"}, "steps[0].config.webhook_url: must be an http(s) URL"),
        ({"webhook_url": "$secret:SLACK_WEBHOOK", "text": 5}, "steps[0].config.text: must be a string"),
        ({"webhook_url": "$secret:SLACK_WEBHOOK", "blocks": {"type": "x"}}, "steps[0].config.blocks: must be a list"),
        ({"webhook_url": "$secret:SLACK_WEBHOOK", "text": "hi", "channel": "#x"}, "steps[0].config.channel: unknown key"),
    ],
)
def test_bad_configs_are_refused_at_publish(config, message, db):
    with pytest.raises(SpecError) as info:
        publish("bad", trigger_spec={"event": "e"}, steps=[{"id": "tell", "type": "slack", "config": config}])
    assert message in str(info.value)


@pytest.mark.django_db(transaction=True)
def test_a_500_then_ok_is_retried_through_the_worker(pg_conninfo, receiver, monkeypatch):
    url = receiver.url(HOOK)
    monkeypatch.setenv("AUTOMATE_SLACK_WEBHOOK", url)
    receiver.route(HOOK, Reply(500, "oops"), Reply(200, "ok"))
    publish("notify", trigger_spec={"event": "order.shipped"}, steps=[{
        "id": "tell", "type": "slack", "max_retries": 2, "retry": {"base_seconds": 0.05, "jitter": "none"},
        "config": {"webhook_url": "$secret:SLACK_WEBHOOK", "text": "Order {{ event.payload.id }} shipped",
                   "blocks": BLOCKS},
    }])
    emit_event("order.shipped", {"id": 42})
    drain(worker(pg_conninfo))
    rows = list(StepRun.objects.order_by("attempt").values_list("attempt", "status", "error", "output"))
    assert rows == [
        (1, "RETRYING", "TransientStepError: slack webhook: HTTP 500 Internal Server Error (oops)", None),
        (2, "SUCCEEDED", "", {"status": 200, "ok": True}),
    ]
    assert [r.json for r in receiver.requests] == [{"text": "Order 42 shipped", "blocks": BLOCKS}] * 2
    assert ExecutionRun.objects.get().status == "SUCCEEDED"
    audit = [(e.action, e.resource) for e in AuditLogEntry.objects.filter(actor="automate-worker")]
    assert audit == [("secret.used", "secret:SLACK_WEBHOOK")]  # no policy decision: nothing was refused
    assert all(url not in str(e.details) for e in AuditLogEntry.objects.all())

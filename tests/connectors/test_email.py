"""The ``email`` connector against a real SMTP server (aiosmtpd on 127.0.0.1), through the worker."""

from __future__ import annotations

import asyncio
import email
import socket
import threading
from collections.abc import Iterator
from email import policy
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.test import override_settings

from automate.core.errors import SpecError
from automate.models import ExecutionRun, OutboxJob, StepRun
from automate.runtime import emit_event
from automate.workflows import publish
from tests.aio.conftest import drain, make_config  # noqa: F401  (make_config is a fixture)

pytestmark = pytest.mark.django_db(transaction=True)

QUICK_RETRY = {"kind": "fixed", "base_seconds": 0.05, "max_seconds": 0.05, "jitter": "none"}


class Recorder:
    """An aiosmtpd handler that keeps what it accepts; it can refuse recipients or answer DATA with
    prepared replies first (``"451 ..."``)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], email.message.EmailMessage]] = []
        self.refuse: dict[str, str] = {}  # address -> reply
        self.data_replies: list[str] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        message = email.message_from_bytes(envelope.original_content, policy=policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted"


class SmtpServer:
    """aiosmtpd's SMTP protocol on 127.0.0.1, on a port the OS picks, in its own thread and loop."""

    def __init__(self, handler: Recorder) -> None:
        self.handler = handler
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="smtp-server", daemon=True)
        self.thread.start()
        create = self.loop.create_server(lambda: SMTP(handler, hostname="smtp.test"), "127.0.0.1", 0)
        self.server = asyncio.run_coroutine_threadsafe(create, self.loop).result(10)
        self.port: int = self.server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self.loop.is_closed():
            return

        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(Recorder())
    try:
        with override_settings(
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=server.port,
            EMAIL_USE_TLS=False,
            EMAIL_USE_SSL=False,
            EMAIL_HOST_USER="",
            EMAIL_HOST_PASSWORD="",
            EMAIL_TIMEOUT=10,
            DEFAULT_FROM_EMAIL="shop@example.com",
        ):
            yield server
    finally:
        server.stop()


def email_step(max_retries: int = 0, **config: Any) -> list[dict[str, Any]]:
    base = {"to": ["{{ event.payload.email }}"], "subject": "Order {{ event.payload.id }}", "body": "Thanks!"}
    return [{
        "id": "mail", "type": "email", "max_retries": max_retries, "retry": QUICK_RETRY, "config": base | config,
    }]


def attempts() -> list[tuple[int, str]]:
    return list(StepRun.objects.order_by("attempt").values_list("attempt", "status"))


def test_message_arrives_with_subject_text_and_html_parts_and_every_recipient(make_config, smtp):  # noqa: F811
    publish("mail", trigger_spec={"event": "order.shipped"}, steps=email_step(
        html="<p>Order <b>{{ event.payload.id }}</b> shipped</p>",
        cc=["ops@example.com"], bcc=["audit@example.com"], reply_to=["help@example.com"],
        **{"from": "Shop <noreply@example.com>"},
    ))
    emit_event("order.shipped", {"email": "ann@example.com", "id": 42})
    drain(make_config())

    run = ExecutionRun.objects.get()
    assert run.status == "SUCCEEDED", run.error
    [(mail_from, rcpt_tos, message)] = smtp.handler.messages
    assert mail_from == "noreply@example.com"
    assert sorted(rcpt_tos) == ["ann@example.com", "audit@example.com", "ops@example.com"]
    assert message["Subject"] == "Order 42"
    assert message["To"] == "ann@example.com" and message["Cc"] == "ops@example.com"
    assert message["Bcc"] is None  # bcc goes to the envelope only
    assert message["Reply-To"] == "help@example.com"
    assert message["From"] == "Shop <noreply@example.com>"
    assert message.get_content_type() == "multipart/alternative"
    assert message.get_body(("plain",)).get_content().strip() == "Thanks!"
    assert message.get_body(("html",)).get_content().strip() == "<p>Order <b>42</b> shipped</p>"
    output = run.outputs["mail"]
    assert output == {"sent": 1, "to": ["ann@example.com"], "message_id": message["Message-ID"].strip()}
    assert f"{run.id}.mail@" in output["message_id"]  # carries the step's idempotency key
    assert OutboxJob.objects.get().status == "COMPLETED"


def test_html_only_and_default_sender_and_a_template_rendering_a_list(make_config, smtp):  # noqa: F811
    steps = email_step(to="{{ event.payload.team }}", html="<h1>Hi</h1>")
    del steps[0]["config"]["body"]
    publish("mail", trigger_spec={"event": "e"}, steps=steps)
    emit_event("e", {"team": ["a@example.com", "b@example.com"], "id": 1})
    drain(make_config())

    assert ExecutionRun.objects.get().status == "SUCCEEDED"
    [(mail_from, rcpt_tos, message)] = smtp.handler.messages
    assert mail_from == "shop@example.com"  # settings.DEFAULT_FROM_EMAIL
    assert rcpt_tos == ["a@example.com", "b@example.com"]
    assert message.get_content_type() == "text/html"
    assert message.get_content().strip() == "<h1>Hi</h1>"


def test_a_stopped_smtp_server_is_a_transient_error_and_retried(make_config, smtp):  # noqa: F811
    smtp.stop()
    publish("mail", trigger_spec={"event": "e"}, steps=email_step(max_retries=1))
    emit_event("e", {"email": "ann@example.com", "id": 1})
    drain(make_config())

    assert attempts() == [(1, "RETRYING"), (2, "FAILED")]
    for error in StepRun.objects.values_list("error", flat=True):
        assert "SMTP: could not reach the mail server (ConnectionRefusedError" in error
    run = ExecutionRun.objects.get()
    assert run.status == "FAILED" and "step 'mail'" in run.error
    assert OutboxJob.objects.get().status == "FAILED"


def test_a_4xx_reply_is_retried_and_the_retry_delivers_once(make_config, smtp):  # noqa: F811
    smtp.handler.data_replies = ["451 4.3.0 try again later"]
    publish("mail", trigger_spec={"event": "e"}, steps=email_step(max_retries=2))
    emit_event("e", {"email": "ann@example.com", "id": 1})
    drain(make_config())

    assert attempts() == [(1, "RETRYING"), (2, "SUCCEEDED")]
    assert "the mail server replied 451 4.3.0 try again later (SMTPDataError)" in StepRun.objects.get(attempt=1).error
    assert len(smtp.handler.messages) == 1


def test_a_silent_server_times_out_transiently(make_config, smtp):  # noqa: F811
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never greets
        port = silent.getsockname()[1]
        publish("mail", trigger_spec={"event": "e"}, steps=email_step(max_retries=1))
        emit_event("e", {"email": "ann@example.com", "id": 1})
        with override_settings(EMAIL_PORT=port, EMAIL_TIMEOUT=0.3):
            drain(make_config())

    assert attempts() == [(1, "RETRYING"), (2, "FAILED")]
    errors = list(StepRun.objects.order_by("attempt").values_list("error", flat=True))
    assert all("SMTP: could not talk to the mail server" in e and "timed out" in e for e in errors), errors


@pytest.mark.parametrize(
    ("reply", "rows"),
    [
        ("550 5.1.1 no such user", [(1, "FAILED")]),  # permanent: not retried despite max_retries
        ("450 4.2.1 mailbox busy", [(1, "RETRYING"), (2, "RETRYING"), (3, "FAILED")]),  # 4xx: transient
    ],
)
def test_refused_recipient(make_config, smtp, reply, rows):  # noqa: F811
    smtp.handler.refuse["nobody@example.com"] = reply
    publish("mail", trigger_spec={"event": "e"}, steps=email_step(max_retries=2))
    emit_event("e", {"email": "nobody@example.com", "id": 1})
    drain(make_config())

    assert attempts() == rows
    run = ExecutionRun.objects.get()
    assert run.status == "FAILED"
    assert f"SMTP: recipients refused (nobody@example.com: {reply})" in run.error
    assert smtp.handler.messages == []


def test_a_5xx_data_reply_is_permanent(make_config, smtp):  # noqa: F811
    smtp.handler.data_replies = ["554 5.6.0 message refused"]
    publish("mail", trigger_spec={"event": "e"}, steps=email_step(max_retries=3))
    emit_event("e", {"email": "ann@example.com", "id": 1})
    drain(make_config())

    assert attempts() == [(1, "FAILED")]
    assert "replied 554 5.6.0 message refused (SMTPDataError)" in ExecutionRun.objects.get().error


@pytest.mark.parametrize(
    ("payload", "config", "message"),
    [
        ({"email": "ann@example.com", "id": "1\r\nBcc: victim@example.com"}, {},
         "config.subject: contains a line break (header injection refused)"),
        ({"email": "ann@example.com\nBcc: victim@example.com", "id": 1}, {},
         "config.to[0]: contains a line break (header injection refused)"),
        ({"email": "ann@example.com", "id": 1, "cc": "x@example.com\r\nBcc: victim@example.com"},
         {"cc": ["{{ event.payload.cc }}"]}, "config.cc[0]: contains a line break (header injection refused)"),
        ({"email": "ann@example.com", "id": 1, "sender": "a@example.com\nBcc: v@example.com"},
         {"from": "{{ event.payload.sender }}"}, "config.from: contains a line break (header injection refused)"),
        ({"email": "not an address", "id": 1}, {}, "config.to[0]: is not a valid email address ('not an address')"),
        ({"email": "a@example.com, b@example.com", "id": 1}, {}, "config.to[0]: must be exactly one email address"),
        ({"email": None, "id": 1}, {}, "config.to[0]: must be a non-empty string"),
        ({"email": [], "id": 1}, {"to": "{{ event.payload.email }}"}, "config.to: must be a non-empty list"),
    ],
)
def test_rendered_headers_are_checked_and_injection_refused(make_config, smtp, payload, config, message):  # noqa: F811
    publish("mail", trigger_spec={"event": "e"}, steps=email_step(max_retries=3, **config))
    emit_event("e", payload)
    drain(make_config())

    assert attempts() == [(1, "FAILED")]  # permanent
    run = ExecutionRun.objects.get()
    assert message in run.error
    assert "victim" not in run.error
    assert smtp.handler.messages == []


class ThreadRecordingBackend(LocmemBackend):
    threads: list[str] = []

    def send_messages(self, messages: Any) -> int:
        self.threads.append(threading.current_thread().name)
        return super().send_messages(messages)


@override_settings(EMAIL_BACKEND="tests.connectors.test_email.ThreadRecordingBackend")
def test_any_configured_backend_is_used_in_a_sync_thread_not_on_the_loop(make_config):  # noqa: F811
    from django.core import mail

    ThreadRecordingBackend.threads.clear()
    publish("mail", trigger_spec={"event": "e"}, steps=email_step())
    emit_event("e", {"email": "ann@example.com", "id": 7})
    drain(make_config())

    assert ExecutionRun.objects.get().status == "SUCCEEDED"
    assert ThreadRecordingBackend.threads == ["automate-sync"]
    [sent] = mail.outbox
    assert (sent.subject, sent.to, sent.body) == ("Order 7", ["ann@example.com"], "Thanks!")


GOOD = {"to": ["a@example.com"], "subject": "s", "body": "b"}


@pytest.mark.django_db  # nothing to flush: no transactional test case needed
@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"subject": "s", "body": "b"}, "steps[0].config.to: required"),
        (GOOD | {"to": []}, "steps[0].config.to: must be a non-empty list of addresses (or a template)"),
        (GOOD | {"to": "a@example.com"}, "steps[0].config.to: must be a list of addresses (or a template)"),
        (GOOD | {"to": {"a": 1}}, "steps[0].config.to: must be a non-empty list"),
        (GOOD | {"to": ["a@example.com", 3]}, "steps[0].config.to[1]: must be a string"),
        (GOOD | {"to": ["nope"]}, "steps[0].config.to[0]: is not a valid email address"),
        (GOOD | {"to": ["a@example.com\nBcc: v@example.com"]}, "steps[0].config.to[0]: contains a line break"),
        (GOOD | {"to": ["a@example.com"] * 101}, "steps[0].config.to: at most 100 addresses"),
        (GOOD | {"cc": "x"}, "steps[0].config.cc: must be a list of addresses"),
        (GOOD | {"bcc": ["bad"]}, "steps[0].config.bcc[0]: is not a valid email address"),
        (GOOD | {"reply_to": [None]}, "steps[0].config.reply_to[0]: must be a string"),
        (GOOD | {"from": "nobody"}, "steps[0].config.from: is not a valid email address"),
        (GOOD | {"from": 5}, "steps[0].config.from: must be a string"),
        ({"to": ["a@example.com"], "body": "b"}, "steps[0].config.subject: required"),
        (GOOD | {"subject": "  "}, "steps[0].config.subject: required"),
        (GOOD | {"subject": "a\r\nBcc: v@example.com"}, "steps[0].config.subject: contains a line break"),
        ({"to": ["a@example.com"], "subject": "s"}, "steps[0].config.body: 'body' or 'html' is required"),
        (GOOD | {"body": ""}, "steps[0].config.body: 'body' or 'html' is required"),
        (GOOD | {"body": ["x"]}, "steps[0].config.body: must be a string"),
        (GOOD | {"html": 1}, "steps[0].config.html: must be a string"),
        (GOOD | {"attachments": []}, "steps[0].config.attachments: unknown key"),
    ],
)
def test_bad_configs_are_refused_at_publish_naming_the_field(config, message):
    with pytest.raises(SpecError) as info:
        publish("bad", trigger_spec={"event": "e"}, steps=[{"id": "m", "type": "email", "config": config}])
    assert message in str(info.value)
    assert not ExecutionRun.objects.exists()
    from automate.models import Workflow

    assert not Workflow.objects.exists()


@pytest.mark.django_db
def test_templates_and_secret_references_pass_publish():
    version = publish("ok", trigger_spec={"event": "e"}, steps=[{"id": "m", "type": "email", "config": {
        "to": "{{ event.payload.to }}", "cc": ["{{ event.payload.cc }}"], "from": "$secret:MAIL_FROM",
        "subject": "Hi {{ event.payload.name }}", "html": "<p>hi</p>",
    }}])
    assert version.version_num == 1

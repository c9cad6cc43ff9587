"""The ``http`` connector against real local servers: requests, output shapes, failures and their
classification, retries through the worker, caps, and secrets that never reach what is stored."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import timedelta

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider

from automate.connectors import PermanentStepError, TransientStepError, classify_failure, get_connector
from automate.connectors.http import aclose_clients
from automate.core.errors import RetryLater, SpecError
from automate.models import AuditLogEntry, ExecutionRun, OutboxJob, StepRun
from automate.runtime import emit_event
from automate.workflows import publish
from tests.aio.procs import ROOT
from tests.connectors.http_support import automate, drain, make_ctx, worker
from tests.servers import LocalServer, Reply, redirect_chain

HTTP = get_connector("http")
LOCAL = ["127.0.0.1/32"]
FAST_RETRY = {"base_seconds": 0.05, "max_seconds": 0.05, "jitter": "none"}


@pytest.fixture
async def closing():
    yield
    await aclose_clients()


@pytest.fixture
def server():
    with LocalServer() as s, automate(allow=LOCAL):
        yield s


# -- requests and output ---------------------------------------------------------------------------------


async def test_get_sends_params_and_headers_and_outputs_json(server, closing):
    out = await HTTP.run({
        "url": server.url("/items?fixed=1"), "params": {"q": "shoes", "page": 2, "tag": ["a", "b"], "on": True},
        "headers": {"X-Request": "abc", "Accept": "application/json"},
    }, make_ctx())
    assert out["status"] == 200 and set(out) == {"status", "headers", "json"}
    echo = out["json"]
    assert (echo["method"], echo["path"]) == ("GET", "/items")
    assert echo["query"] == {"fixed": ["1"], "q": ["shoes"], "page": ["2"], "tag": ["a", "b"], "on": ["true"]}
    assert echo["headers"]["x-request"] == "abc" and echo["headers"]["accept"] == "application/json"
    assert echo["headers"]["user-agent"] == "django-automate"
    assert echo["headers"]["idempotency-key"] == "run-1:call"
    assert out["headers"]["content-type"] == "application/json"


@pytest.mark.parametrize("method", ["POST", "put", "PATCH", "DELETE"])
async def test_json_bodies_are_sent_as_json(method, server, closing):
    out = await HTTP.run({"method": method, "url": server.url("/orders"), "json": {"id": 7, "tags": ["x"]}}, make_ctx())
    echo = out["json"]
    assert echo["method"] == method.upper() and echo["json"] == {"id": 7, "tags": ["x"]}
    assert echo["headers"]["content-type"] == "application/json"


async def test_a_raw_body_keeps_its_configured_content_type(server, closing):
    out = await HTTP.run({"method": "POST", "url": server.url("/raw"), "body": "a=1&b=2",
                          "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, make_ctx())
    assert out["json"]["body"] == "a=1&b=2"
    assert out["json"]["headers"]["content-type"] == "application/x-www-form-urlencoded"
    out = await HTTP.run({"method": "POST", "url": server.url("/raw"), "body": "plain"}, make_ctx())
    assert out["json"]["headers"]["content-type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(200, "hello"), {"text": "hello"}),
        (Reply(201, b'{"a": 1}', headers={"Content-Type": "application/problem+json"}), {"json": {"a": 1}}),
        (Reply(200, b"{not json", headers={"Content-Type": "application/json"}), {"text": "{not json"}),
        (Reply(200, "caf\u00e9".encode("latin-1"), headers={"Content-Type": "text/plain; charset=latin-1"}),
         {"text": "caf\u00e9"}),
        (Reply(200, b"bin\x00ary\xff", headers={"Content-Type": "application/octet-stream"}), {"text": "bin\ufffdary\ufffd"}),
        (Reply(204), {"text": ""}),
    ],
)
async def test_output_is_json_or_text(reply, expected, server, closing):
    server.route("/r", reply)
    out = await HTTP.run({"url": server.url("/r")}, make_ctx())
    assert out["status"] == reply.status
    assert {k: v for k, v in out.items() if k in ("json", "text")} == expected


async def test_head_has_no_body(server, closing):
    out = await HTTP.run({"method": "HEAD", "url": server.url("/h")}, make_ctx())
    assert out["status"] == 200 and out["text"] == ""


async def test_cookies_are_not_kept_between_requests(server, closing):
    server.route("/login", Reply(200, "in", headers={"Set-Cookie": "sid=abc; Path=/"}))
    first = await HTTP.run({"url": server.url("/login")}, make_ctx())
    assert first["headers"]["set-cookie"].startswith("sid=abc")
    second = await HTTP.run({"url": server.url("/after")}, make_ctx())
    assert "cookie" not in second["json"]["headers"]


async def test_traceparent_is_sent_from_the_current_span(server, closing):
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("step") as span:
        out = await HTTP.run({"url": server.url("/t")}, make_ctx())
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert out["json"]["headers"]["traceparent"].split("-")[1] == trace_id
    untraced = await HTTP.run({"url": server.url("/t")}, make_ctx())
    assert "traceparent" not in untraced["json"]["headers"]


# -- failures and their classification -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "kind", "text"),
    [
        (Reply(503), TransientStepError, "GET 127.0.0.1:{port}/f: HTTP 503 Service Unavailable"),
        (Reply(500), TransientStepError, "HTTP 500 Internal Server Error"),
        (Reply(408), TransientStepError, "HTTP 408 Request Timeout"),
        (Reply(404), PermanentStepError, "GET 127.0.0.1:{port}/f: HTTP 404 Not Found"),
        (Reply(401), PermanentStepError, "HTTP 401 Unauthorized"),
        (Reply(422), PermanentStepError, "HTTP 422 Unprocessable"),
    ],
)
async def test_statuses_are_classified(reply, kind, text, server, closing):
    server.route("/f", reply)
    with pytest.raises(kind) as info:
        await HTTP.run({"url": server.url("/f?api_key=qs-secret"), "headers": {"X-Key": "hdr-secret"}}, make_ctx())
    assert text.format(port=server.port) in str(info.value)
    assert "qs-secret" not in str(info.value) and "hdr-secret" not in str(info.value)
    assert classify_failure(info.value) == (kind is TransientStepError, None)


@pytest.mark.parametrize(("value", "delay"), [("120", 120.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("soon", None)])
async def test_429_asks_to_retry_after_the_servers_delay(value, delay, server, closing):
    server.route("/limited", Reply(429, headers={"Retry-After": value}))
    with pytest.raises(RetryLater) as info:
        await HTTP.run({"url": server.url("/limited")}, make_ctx())
    assert info.value.delay == delay and classify_failure(info.value) == (True, delay)
    assert "HTTP 429 Too Many Requests" in str(info.value)


async def test_a_slow_server_times_out_transiently(server, closing):
    server.route("/slow", Reply(200, "late", delay=10))
    with pytest.raises(TransientStepError) as info:
        await HTTP.run({"url": server.url("/slow"), "timeout_seconds": 0.3}, make_ctx())
    assert str(info.value).startswith(f"GET 127.0.0.1:{server.port}/slow: ")
    assert "no complete response within 0.3s" in str(info.value) or "timed out (ReadTimeout)" in str(info.value)
    assert classify_failure(info.value) == (True, None)


async def test_a_refused_connection_is_transient(closing):
    with LocalServer() as gone:
        url = gone.url("/x")
    with automate(allow=LOCAL), pytest.raises(TransientStepError, match="ConnectError"):
        await HTTP.run({"url": url}, make_ctx())


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_response_over_the_cap_fails_naming_it(chunked, closing):
    with LocalServer() as server, automate(allow=LOCAL, max_response_bytes=1000):
        server.route("/big", Reply(200, b"x" * 200_000, chunked=chunked))
        server.route("/fits", Reply(200, b"y" * 1000, chunked=chunked))
        with pytest.raises(PermanentStepError) as info:
            await HTTP.run({"url": server.url("/big")}, make_ctx())
        assert "larger than DJANGO_AUTOMATE.HTTP.max_response_bytes (1000 bytes)" in str(info.value)
        assert (await HTTP.run({"url": server.url("/fits")}, make_ctx()))["text"] == "y" * 1000


async def test_redirects_are_followed_up_to_the_cap(closing):
    with LocalServer() as server, automate(allow=LOCAL, max_redirects=2):
        server.route_prefix("/r", redirect_chain("/r"))
        assert (await HTTP.run({"url": server.url("/r/2")}, make_ctx()))["json"] == {"hops": "done"}
        with pytest.raises(PermanentStepError) as info:
            await HTTP.run({"url": server.url("/r/3")}, make_ctx())
        assert "more than DJANGO_AUTOMATE.HTTP.max_redirects (2) redirects" in str(info.value)


async def test_303_turns_a_post_into_a_get_without_its_body(server, closing):
    server.route("/submit", Reply(303, headers={"Location": "/result"}))
    out = await HTTP.run({"method": "POST", "url": server.url("/submit"), "json": {"a": 1}}, make_ctx())
    assert (out["json"]["method"], out["json"]["path"], out["json"]["body"]) == ("GET", "/result", "")
    assert "content-type" not in out["json"]["headers"]


def test_httpx_exceptions_are_classified():
    request = httpx.Request("GET", "http://example.com/")
    for exc in (httpx.ConnectError("x", request=request), httpx.ReadTimeout("x", request=request),
                httpx.ConnectTimeout("x"), httpx.RemoteProtocolError("x"), httpx.ReadError("x"), httpx.PoolTimeout("x")):
        assert classify_failure(exc) == (True, None), exc
    for exc in (httpx.UnsupportedProtocol("x"), httpx.LocalProtocolError("x"), httpx.InvalidURL("x")):
        assert classify_failure(exc) == (False, None), exc


async def test_a_header_value_with_a_line_break_is_refused_without_quoting_it(server, closing):
    with pytest.raises(PermanentStepError) as info:
        await HTTP.run({"url": server.url("/"), "headers": {"X-Token": "abc\r\nX-Injected: 1"}}, make_ctx())
    assert "'X-Token' contains a line break" in str(info.value) and "Injected" not in str(info.value)
    assert server.requests == []


# -- configs refused when a version is saved -------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "steps[0].config.url: required"),
        ({"url": 5}, "steps[0].config.url: must be a string"),
        ({"url": "ftp://x.example/"}, "steps[0].config.url: only absolute http:// and https:// URLs"),
        ({"url": "https://x.example/", "method": "BREW"}, "steps[0].config.method: 'BREW' is not one of GET"),
        ({"url": "https://x.example/", "method": 1}, "steps[0].config.method: must be a string"),
        ({"url": "https://x.example/", "json": {}, "body": "x"}, "steps[0].config.body: give either 'json' or 'body'"),
        ({"url": "https://x.example/", "body": {"a": 1}}, "steps[0].config.body: must be a string"),
        ({"url": "https://x.example/", "timeout_seconds": 0}, "steps[0].config.timeout_seconds: must be more than 0"),
        ({"url": "https://x.example/", "timeout_seconds": "10"}, "steps[0].config.timeout_seconds: must be a number"),
        ({"url": "https://x.example/", "timeout_seconds": True}, "steps[0].config.timeout_seconds: must be a number"),
        ({"url": "https://x.example/", "timeout_seconds": 7200}, "steps[0].config.timeout_seconds: must be more than 0 and at most 3600"),
        ({"url": "https://x.example/", "headers": ["a"]}, "steps[0].config.headers: must be an object"),
        ({"url": "https://x.example/", "headers": {"Bad Name": "x"}}, "steps[0].config.headers.Bad Name: is not a valid header name"),
        ({"url": "https://x.example/", "headers": {"Host": "evil"}}, "steps[0].config.headers.Host: is set by the client"),
        ({"url": "https://x.example/", "headers": {"X-A": ["x"]}}, "steps[0].config.headers.X-A: must be a string"),
        ({"url": "https://x.example/", "params": "q=1"}, "steps[0].config.params: must be an object"),
        ({"url": "https://x.example/", "params": {"q": {"a": 1}}}, "steps[0].config.params: q: must be a string"),
        ({"url": "https://x.example/", "data": 1}, "steps[0].config.data: unknown key"),
    ],
)
def test_bad_configs_are_refused_at_publish(config, message, db):
    with pytest.raises(SpecError) as info:
        publish("bad", trigger_spec={"event": "e"}, steps=[{"id": "call", "type": "http", "config": config}])
    assert message in str(info.value)


def test_templates_and_secrets_pass_validation(db):
    publish("ok", trigger_spec={"event": "e"}, steps=[{"id": "call", "type": "http", "config": {
        "method": "{{ event.payload.method }}", "url": "{{ event.payload.url }}",
        "headers": {"Authorization": "Bearer $secret:API_TOKEN", "X-Id": "{{ event.payload.id }}"},
        "params": "{{ event.payload.params }}", "timeout_seconds": "{{ event.payload.timeout }}",
        "json": {"id": "{{ event.payload.id }}"},
    }}])


def test_registering_the_connectors_creates_no_client_and_imports_no_client_module():
    code = (
        "import django, sys; django.setup(); import automate.connectors as c; "
        "assert {'http', 'slack'} <= set(c.registered_codes()); "
        "print(sorted(m for m in ('automate.connectors.http.client', 'automate.connectors.http.fetch') "
        "if m in sys.modules))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- through the worker ---------------------------------------------------------------------------------

pytestmark_db = pytest.mark.django_db(transaction=True)


def one_step(url: str, **config) -> list[dict]:
    return [{"id": "call", "type": "http", "max_retries": 2, "retry": FAST_RETRY, "config": {"url": url, **config}}]


@pytestmark_db
def test_5xx_then_success_is_retried_with_the_same_idempotency_key(pg_conninfo, server):
    server.route("/flaky", Reply(502), Reply(201, {"created": True}))
    publish("flaky", trigger_spec={"event": "go"}, steps=one_step(server.url("/flaky"), method="POST", json={"a": 1}))
    emit_event("go", {})
    drain(worker(pg_conninfo))
    rows = list(StepRun.objects.order_by("attempt").values_list("attempt", "status", "error", "output"))
    assert [(a, s) for a, s, _, _ in rows] == [(1, "RETRYING"), (2, "SUCCEEDED")]
    assert "TransientStepError: POST 127.0.0.1" in rows[0][2] and "HTTP 502 Bad Gateway" in rows[0][2]
    assert rows[1][3]["status"] == 201 and rows[1][3]["json"] == {"created": True}
    run = ExecutionRun.objects.get()
    keys = [r.headers["idempotency-key"] for r in server.received("/flaky")]
    assert keys == [f"{run.id}:call"] * 2


@pytestmark_db
def test_429_retry_after_parks_the_job_for_the_servers_delay(pg_conninfo, server):
    server.route("/limited", Reply(429, headers={"Retry-After": "2"}), Reply(200, {"ok": True}))
    steps = one_step(server.url("/limited"))
    steps[0]["retry"] = {"base_seconds": 0.01, "max_seconds": 60, "jitter": "none"}
    publish("limited", trigger_spec={"event": "go"}, steps=steps)
    emit_event("go", {})
    drain(worker(pg_conninfo, park_after=0.5))  # a 2 s wait is longer than park_after: given back to the database
    first, second = StepRun.objects.order_by("attempt")
    assert (first.status, second.status) == ("RETRYING", "SUCCEEDED")
    assert "RetryLater: GET 127.0.0.1" in first.error and "HTTP 429 Too Many Requests (Retry-After 2s)" in first.error
    assert second.started_at - first.finished_at >= timedelta(seconds=2)  # the server's delay, not 0.01 s
    assert OutboxJob.objects.get().payload == {"parked": 1}


@pytestmark_db
def test_404_fails_at_once_naming_the_status(pg_conninfo, server):
    server.route("/missing", Reply(404, "no such thing"))
    publish("gone", trigger_spec={"event": "go"}, steps=one_step(server.url("/missing?token=q-secret")))
    emit_event("go", {})
    drain(worker(pg_conninfo))
    step = StepRun.objects.get()
    assert (step.attempt, step.status) == (1, "FAILED")
    assert step.error == f"PermanentStepError: GET 127.0.0.1:{server.port}/missing: HTTP 404 Not Found"
    assert ExecutionRun.objects.get().status == "FAILED"


@pytestmark_db
def test_a_timeout_is_retried_then_fails(pg_conninfo, server):
    server.route("/slow", Reply(200, "late", delay=10))
    publish("slow", trigger_spec={"event": "go"}, steps=[{**one_step(server.url("/slow"), timeout_seconds=0.2)[0],
                                                          "max_retries": 1}])
    emit_event("go", {})
    drain(worker(pg_conninfo))
    rows = list(StepRun.objects.order_by("attempt").values_list("status", "error"))
    assert [s for s, _ in rows] == ["RETRYING", "FAILED"]
    assert all("TransientStepError: GET 127.0.0.1" in e for _, e in rows)
    assert len(server.received("/slow")) == 2


# -- secrets in headers never reach what is stored ------------------------------------------------------

SECRET_STEPS = [
    # the echo reflects both headers: "authorization" is redacted by its key, "x-client" by the value
    {"id": "call", "type": "http", "config": {
        "url": "{{ event.payload.url }}",
        "headers": {"Authorization": "Bearer $secret:API_TOKEN", "X-Client": "$secret:API_TOKEN"}}},
    {"id": "fail", "type": "http", "config": {
        "url": "{{ event.payload.base }}/missing?k=$secret:API_TOKEN", "headers": {"X-Client": "$secret:API_TOKEN"}}},
]


def strings(value):
    """Every string in a stored value (keys too), unescaped: a JSON dump would hide a quote in a secret."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from strings(v)


def stored(run_ids) -> list[str]:
    """The outputs and errors of these runs' steps and runs, and every audit entry."""
    steps = StepRun.objects.filter(run_id__in=run_ids)
    runs = ExecutionRun.objects.filter(id__in=run_ids)
    return list(strings([
        [(s.output, s.error) for s in steps], [(r.outputs, r.error) for r in runs],
        [(a.actor, a.action, a.resource, a.details) for a in AuditLogEntry.objects.all()],
    ]))


def serve_secret_echo(server: LocalServer) -> dict:
    server.route("/missing", Reply(404, "no")).route_prefix("/missing", lambda _: Reply(404, "no"))
    return {"url": server.url("/echo"), "base": server.url("").rstrip("/")}


@pytestmark_db
def test_a_secret_header_echoed_back_is_redacted_everywhere(pg_conninfo, server, monkeypatch, caplog):
    value = "tok-3f9a-live-7c21e0b5"
    monkeypatch.setenv("AUTOMATE_API_TOKEN", value)
    steps = [*SECRET_STEPS, {"id": "path", "type": "http", "config": {
        "url": "{{ event.payload.base }}/missing/$secret:API_TOKEN/x"}}]  # a secret in the path: scrubbed
    publish("secret", trigger_spec={"event": "go"}, steps=steps)
    emit_event("go", serve_secret_echo(server))
    caplog.set_level(logging.DEBUG)
    drain(worker(pg_conninfo))
    sent = server.received("/echo")[0].headers
    assert (sent["authorization"], sent["x-client"]) == (f"Bearer {value}", value)  # it was sent
    call = StepRun.objects.get(step_id="call")
    assert call.status == "SUCCEEDED"
    echoed = call.output["json"]["headers"]
    assert echoed["x-client"] == "[REDACTED]" and value not in echoed["authorization"]
    fail, path = StepRun.objects.get(step_id="fail"), StepRun.objects.get(step_id="path")
    assert fail.status == path.status == "FAILED" and "HTTP 404 Not Found" in fail.error
    assert path.error.startswith(f"PermanentStepError: GET 127.0.0.1:{server.port}/missing/") and "/x: HTTP 404" in path.error
    texts = stored([call.run_id])
    assert not [t for t in texts if value in t] and value not in caplog.text
    assert AuditLogEntry.objects.filter(action="secret.used").count() == 1


@pytestmark_db
@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=12, max_size=40))
def test_no_generated_secret_reaches_stored_outputs_or_errors(pg_conninfo, secret):
    os.environ["AUTOMATE_API_TOKEN"] = secret
    try:
        with LocalServer() as server, automate(allow=LOCAL):
            event_type = f"go-{ExecutionRun.objects.count()}"
            publish(event_type, trigger_spec={"event": event_type}, steps=SECRET_STEPS)
            emit_event(event_type, serve_secret_echo(server))
            drain(worker(pg_conninfo))
            assert server.received("/echo")[0].headers["x-client"] == secret  # it was sent as is
        run = ExecutionRun.objects.latest("created_at")
        assert StepRun.objects.get(run_id=run.id, step_id="call").status == "SUCCEEDED"
        assert StepRun.objects.get(run_id=run.id, step_id="fail").status == "FAILED"
        assert not [t for t in stored([run.id]) if secret in t]
    finally:
        del os.environ["AUTOMATE_API_TOKEN"]


def test_the_readme_examples_are_valid_configs(db):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Connectors: http and slack", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```json\n")[1:]]
    assert len(blocks) == 4
    for i, block in enumerate(blocks):
        step = json.loads(block)
        publish(f"readme-{i}", trigger_spec={"event": "e"}, steps=[step])

"""The ``llm`` connector against a real local fake OpenAI server (tests/connectors/fake_openai.py), run
directly and by an in-process worker, with the real database for the budget."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from opentelemetry.sdk.trace import TracerProvider

from automate.aio.config import WorkerConfig
from automate.conf import validate_settings
from automate.connectors import PermanentStepError, StepContext, TransientStepError, get_connector
from automate.connectors.llm import BudgetExceeded, LlmConnector
from automate.connectors.llm.budget import spend_on, today
from automate.core.errors import RetryLater, SpecError
from automate.models import AuditLogEntry, ExecutionRun, LlmReservation, OutboxJob, StepRun, Workflow
from automate.runtime import emit_event
from automate.workflows import publish
from tests import llm_settings
from tests.aio.conftest import drain
from tests.connectors.fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.django_db(transaction=True)

KEY = f"llmkey{uuid.uuid4().hex}"  # no sk- prefix: the pattern rules must not be what hides it
MODEL = llm_settings.LLM_MODEL
PRICES = {MODEL: {"input_per_1k": 0.5, "output_per_1k": 1.5}, "other": {"input_per_1k": 0, "output_per_1k": 0}}
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}]
CONFIG = {"model": MODEL, "messages": MESSAGES, "max_tokens": 20, "temperature": 0}
FAST_RETRY = {"kind": "fixed", "base_seconds": 0.01, "max_seconds": 5, "jitter": "none"}


def settings_with(llm: dict[str, Any] | None = None, budget: float = 10.0, **policy: Any) -> dict[str, Any]:
    base = llm_settings.DJANGO_AUTOMATE
    return {
        **base,
        "POLICY": {**base["POLICY"], "llm_budget_daily": budget, **policy},
        "LLM": {**llm_settings.LLM, "prices": PRICES, "timeout_seconds": 30, **(llm or {})},
    }


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    with FakeOpenAI() as server:
        monkeypatch.setenv("AUTOMATE_LLM_TEST_URL", server.base_url)
        monkeypatch.setenv("AUTOMATE_LLM_TEST_KEY", KEY)
        with override_settings(DJANGO_AUTOMATE=settings_with()):
            yield server


def call(config: dict[str, Any], audits: list[tuple[str, str, dict[str, Any]]] | None = None,
         event_id: str | None = None) -> Any:
    """The connector's run(), directly (no worker)."""
    auditor = (lambda *entry: audits.append(entry)) if audits is not None else None
    ctx = StepContext("run-1", "ask", 1, "wf", {"id": event_id}, auditor)
    return asyncio.run(LlmConnector().run(config, ctx))


def spend() -> tuple[Decimal, Decimal]:
    return spend_on(today())


def make_config(conninfo: str) -> WorkerConfig:
    return WorkerConfig(conninfo=conninfo, drain=True, poll_interval=0.2, lease_seconds=30.0, health_interval=1.0,
                        shutdown_grace=2.0, batch_size=50, concurrency=50)


def stored_text() -> str:
    """Everything the runs stored or audited, as one string."""
    return json.dumps([
        list(StepRun.objects.values_list("output", "error")),
        list(ExecutionRun.objects.values_list("outputs", "error")),
        list(AuditLogEntry.objects.values_list("resource", "details")),
        list(OutboxJob.objects.values_list("last_error", flat=True)),
    ], default=str)


# -- the call ---------------------------------------------------------------------------------------------


def test_output_shape_cost_from_prices_and_usage(fake):
    out = call(CONFIG)
    # The fake's usage: prompt = ceil((9 + 6) / 4) + 3 * 2 = 10, completion = max_tokens = 20.
    # Cost: 10 x 0.5 / 1000 + 20 x 1.5 / 1000 = 0.005 + 0.03.
    assert out == {"content": "echo: Say hi", "usage": {"prompt_tokens": 10, "completion_tokens": 20},
                   "cost_usd": 0.035, "model": f"{MODEL}-2024"}
    assert spend() == (Decimal("0.035"), Decimal("0"))
    assert not LlmReservation.objects.exists()
    request = fake.requests[0]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body == {"model": MODEL, "messages": MESSAGES, "max_tokens": 20, "temperature": 0}
    assert "traceparent" not in request.headers  # no span is current


def test_traceparent_is_injected_when_a_span_is_current(fake):
    tracer = TracerProvider().get_tracer("test")

    async def traced() -> int:
        with tracer.start_as_current_span("outer") as span:
            await LlmConnector().run(CONFIG, StepContext("r", "s", 1, "wf", {}))
            return span.get_span_context().trace_id

    trace_id = asyncio.run(traced())
    assert fake.requests[0].headers["traceparent"].split("-")[1] == format(trace_id, "032x")


def test_a_response_without_usage_is_charged_its_whole_bound(fake):
    fake.usage = False
    out = call(CONFIG)
    # Bound: prompt = 8 + (8 + 6 + 9) + (8 + 4 + 6) = 49 tokens; 49 x 0.5 / 1000 + 20 x 1.5 / 1000 = 0.0545.
    assert out["cost_usd"] == 0.0545 and out["usage_estimated"] is True
    assert out["usage"] == {"prompt_tokens": 49, "completion_tokens": 20}
    assert spend() == (Decimal("0.0545"), Decimal("0"))


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_transient_and_releases_the_reservation(fake, status):
    fake.script(status)
    with pytest.raises(TransientStepError, match=f"llm: the endpoint answered HTTP {status}"):
        call(CONFIG)
    assert spend() == (Decimal("0"), Decimal("0")) and not LlmReservation.objects.exists()


def test_a_failed_call_that_reports_usage_is_settled_to_it(fake):
    fake.script(Reply(500, usage=True))
    with pytest.raises(TransientStepError):
        call(CONFIG)
    assert spend() == (Decimal("0.035"), Decimal("0"))


def test_429_asks_for_the_retry_after_delay(fake):
    fake.script(Reply(429, headers={"retry-after": "7"}))
    with pytest.raises(RetryLater) as info:
        call(CONFIG)
    assert info.value.delay == 7.0 and "HTTP 429" in str(info.value) and "Retry-After 7s" in str(info.value)
    fake.script(429)
    with pytest.raises(RetryLater) as info:
        call(CONFIG)
    assert info.value.delay is None
    assert spend() == (Decimal("0"), Decimal("0"))


@pytest.mark.parametrize(("status", "shown"), [
    (400, "HTTP 400: max_tokens is too large for key [REDACTED]"),
    (401, "HTTP 401: check DJANGO_AUTOMATE.LLM.api_key"),
    (403, "HTTP 403: check DJANGO_AUTOMATE.LLM.api_key"),
    (404, "HTTP 404: max_tokens is too large"),
    (302, "HTTP 302, a redirect (not followed)"),
])
def test_other_statuses_are_permanent_and_name_the_status_never_the_key(fake, status, shown):
    fake.script(Reply(status, error="max_tokens is too large for key $KEY"))
    with pytest.raises(PermanentStepError) as info:
        call(CONFIG)
    assert shown in str(info.value) and KEY not in str(info.value)
    assert spend() == (Decimal("0"), Decimal("0"))


def test_a_timeout_is_transient_and_releases(fake):
    fake.script(Reply(200, delay=10))
    with override_settings(DJANGO_AUTOMATE=settings_with({"timeout_seconds": 0.3})):
        with pytest.raises(TransientStepError, match=r"did not answer within 0.3s \(ReadTimeout\)"):
            call(CONFIG)
    assert spend() == (Decimal("0"), Decimal("0")) and not LlmReservation.objects.exists()


def test_connection_refused_is_transient_and_names_no_url(fake, monkeypatch):
    closed = FakeOpenAI()
    url = closed.base_url
    closed.close()
    monkeypatch.setenv("AUTOMATE_LLM_TEST_URL", url)
    with pytest.raises(TransientStepError) as info:
        call(CONFIG)
    assert str(info.value) == "llm: could not reach the endpoint (ConnectError)"
    assert spend() == (Decimal("0"), Decimal("0"))


def test_the_budget_refuses_a_call_that_does_not_fit_and_audits_it(fake):
    audits: list[tuple[str, str, dict[str, Any]]] = []
    with override_settings(DJANGO_AUTOMATE=settings_with(budget=0.08)):
        call(CONFIG, audits)  # its bound (0.0545) fits; 0.035 spent; the next bound does not fit in 0.045
        with pytest.raises(BudgetExceeded) as info:
            call(CONFIG, audits)
    assert fake.calls == 1
    message = str(info.value)
    assert "DJANGO_AUTOMATE.POLICY.llm_budget_daily is 0.08 USD" in message
    assert "may cost up to 0.054500 USD" in message and "0.035000 USD is spent" in message
    assert isinstance(info.value, PermanentStepError)
    assert audits == [("policy.budget_denied", f"llm:{MODEL}", {
        "run_id": "run-1", "step": "ask", "model": MODEL, "policy": "POLICY.llm_budget_daily", "day": today().isoformat(), "cap_usd": "0.08",
        "spent_usd": "0.035000", "reserved_usd": "0.000000", "bound_usd": "0.054500"})]


# -- configuration, when published and when run ------------------------------------------------------------


def test_publish_refuses_a_model_without_a_price(fake):
    with pytest.raises(SpecError) as info:
        publish("ask", trigger_spec={"event": "q"}, steps=[
            {"id": "ok", "type": "llm", "config": CONFIG},
            {"id": "ask", "type": "llm", "config": {**CONFIG, "model": "gpt-unpriced"}},
        ])
    assert str(info.value).startswith(
        "steps[1].config.model: model 'gpt-unpriced' has no price in DJANGO_AUTOMATE.LLM.prices")
    assert not Workflow.objects.exists()


@pytest.mark.parametrize(("config", "message"), [
    ({k: v for k, v in CONFIG.items() if k != "max_tokens"}, "steps[0].config.max_tokens: required"),
    ({**CONFIG, "max_tokens": 0}, "steps[0].config.max_tokens: must be an integer from 1"),
    ({**CONFIG, "max_tokens": True}, "steps[0].config.max_tokens: must be an integer"),
    ({**CONFIG, "messages": []}, "steps[0].config.messages: must be a non-empty list"),
    ({**CONFIG, "messages": "hi"}, "steps[0].config.messages: must be a non-empty list"),
    ({k: v for k, v in CONFIG.items() if k != "messages"}, "steps[0].config.messages: required"),
    ({**CONFIG, "messages": [{"role": "robot", "content": "x"}]}, "steps[0].config.messages[0].role: must be one"),
    ({**CONFIG, "messages": [{"role": {}, "content": "x"}]}, "steps[0].config.messages[0].role: must be one"),
    ({**CONFIG, "messages": [{"role": "user"}]}, "steps[0].config.messages[0].content: required"),
    ({**CONFIG, "messages": [{"role": "user", "content": 5}]}, "steps[0].config.messages[0].content: must be"),
    ({**CONFIG, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "steps[0].config.messages[0].content[0]: must be a text part"),
    ({**CONFIG, "messages": [{"role": "user", "content": "x", "tool_calls": []}]},
     "steps[0].config.messages[0].tool_calls: unknown key"),
    ({**CONFIG, "temperature": 3}, "steps[0].config.temperature: must be a number from 0 to 2"),
    ({**CONFIG, "top_p": "high"}, "steps[0].config.top_p: must be a number from 0 to 1"),
    ({**CONFIG, "stop": [1]}, "steps[0].config.stop: must be a string or a list"),
    ({**CONFIG, "stream": True}, "steps[0].config.stream: unknown key"),
    ({**CONFIG, "model": ""}, "steps[0].config.model: required"),
    ({**CONFIG, "model": 4}, "steps[0].config.model: required"),
])
def test_publish_refuses_bad_configs_by_path(fake, config, message):
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        publish("bad", trigger_spec={"event": "q"}, steps=[{"id": "s", "type": "llm", "config": config}])
    assert not Workflow.objects.exists()


def test_templated_values_are_checked_when_rendered(fake):
    config = {**CONFIG, "max_tokens": "{{ event.payload.n }}", "messages": "{{ event.payload.messages }}"}
    get_connector("llm").validate_config(config, path="steps[0].config")  # unknown until run time
    with pytest.raises(PermanentStepError, match=r"config.max_tokens: must be an integer"):
        call({**CONFIG, "max_tokens": "{{ x }}"})  # rendered: text that looks like a template is a value
    assert fake.calls == 0


def test_a_templated_model_without_a_price_is_refused_at_run_time_for_good(fake, pg_conninfo):
    publish("ask", trigger_spec={"event": "q"}, steps=[
        {"id": "ask", "type": "llm", "max_retries": 3, "retry": FAST_RETRY,
         "config": {**CONFIG, "model": "{{ event.payload.model }}"}},
    ])
    emit_event("q", {"model": "gpt-unpriced"})
    drain(make_config(pg_conninfo))
    run = ExecutionRun.objects.get()
    assert run.status == "FAILED"
    assert "config.model: model 'gpt-unpriced' has no price in DJANGO_AUTOMATE.LLM.prices" in run.error
    assert StepRun.objects.count() == 1 and fake.calls == 0  # not retried


def test_a_worker_retries_5xx_and_429_then_succeeds_and_records_the_output(fake, pg_conninfo):
    fake.script(500, Reply(429, headers={"retry-after": "1"}))
    publish("ask", trigger_spec={"event": "q"}, steps=[
        {"id": "ask", "type": "llm", "max_retries": 3, "retry": FAST_RETRY, "config": CONFIG},
    ])
    emit_event("q", {})
    drain(make_config(pg_conninfo))
    run = ExecutionRun.objects.get()
    assert run.status == "SUCCEEDED", run.error
    statuses = list(StepRun.objects.order_by("attempt").values_list("status", "error"))
    assert [s for s, _ in statuses] == ["RETRYING", "RETRYING", "SUCCEEDED"], statuses
    assert "HTTP 500" in statuses[0][1] and "Retry-After 1s" in statuses[1][1]
    assert fake.requests[2].at - fake.requests[1].at >= 0.9  # the 1 s asked for, not the 0.01 s fixed wait
    assert run.outputs["ask"]["content"] == "echo: Say hi" and run.outputs["ask"]["cost_usd"] == 0.035
    assert spend() == (Decimal("0.035"), Decimal("0"))  # the failed calls reported no usage: released


def test_a_step_cancelled_by_its_deadline_mid_call_releases_its_reservation(fake, pg_conninfo):
    fake.script(Reply(200, delay=30))  # the server would answer long after the step's 0.3 s deadline
    publish("ask", trigger_spec={"event": "q"}, steps=[
        {"id": "ask", "type": "llm", "timeout_seconds": 0.3, "max_retries": 0, "config": CONFIG}])
    emit_event("q", {})
    drain(make_config(pg_conninfo))
    run = ExecutionRun.objects.get()
    assert run.status == "FAILED" and "TimeoutError" in run.error
    assert fake.calls == 1
    assert spend() == (Decimal("0"), Decimal("0")) and not LlmReservation.objects.exists()


def test_a_worker_fails_a_denied_call_for_good_with_an_audit_entry(fake, pg_conninfo):
    with override_settings(DJANGO_AUTOMATE=settings_with(budget=0.01)):
        publish("ask", trigger_spec={"event": "q"}, steps=[
            {"id": "ask", "type": "llm", "max_retries": 3, "retry": FAST_RETRY, "config": CONFIG}])
        emit_event("q", {})
        drain(make_config(pg_conninfo))
    run = ExecutionRun.objects.get()
    assert run.status == "FAILED" and "BudgetExceeded: LLM budget exceeded" in run.error
    assert StepRun.objects.count() == 1 and fake.calls == 0
    entry = AuditLogEntry.objects.get(action="policy.budget_denied")
    assert entry.resource == f"llm:{MODEL}" and entry.details["bound_usd"] == "0.054500"
    assert entry.details["run_id"] == str(run.id) and entry.details["step"] == "ask"


def test_the_api_key_and_a_secret_base_url_reach_no_output_error_audit_or_log(fake, pg_conninfo, caplog):
    caplog.set_level(logging.DEBUG)
    fake.script(Reply(400, error="bad key $KEY"), Reply(401, error="Incorrect API key provided: $KEY"), 500)
    publish("ask", trigger_spec={"event": "q"}, steps=[
        {"id": "ask", "type": "llm", "max_retries": 0, "config": CONFIG}])
    for _ in range(4):
        emit_event("q", {})
    drain(make_config(pg_conninfo))
    emit_event("q", {})
    with override_settings(DJANGO_AUTOMATE=settings_with(budget=0.0001)):  # then one refused by the budget
        drain(make_config(pg_conninfo))
    runs = list(ExecutionRun.objects.values_list("status", flat=True))
    assert sorted(runs) == ["FAILED", "FAILED", "FAILED", "FAILED", "SUCCEEDED"]
    assert AuditLogEntry.objects.filter(action="policy.budget_denied").count() == 1
    assert AuditLogEntry.objects.filter(action="secret.used").count() == 0  # settings secrets: not the run's
    stored, logs = stored_text(), caplog.text
    assert "HTTP 400: bad key [REDACTED]" in stored and "HTTP Request: POST [REDACTED]/chat/completions" in logs
    for secret in (KEY, fake.base_url.split("//")[1]):
        assert secret not in stored and secret not in logs


def test_bad_endpoint_settings_fail_the_step_by_name(fake, monkeypatch):
    with override_settings(DJANGO_AUTOMATE=settings_with({"base_url": "ftp://llm.internal/v1"})):
        with pytest.raises(PermanentStepError, match=r"DJANGO_AUTOMATE.LLM.base_url 'ftp://llm.internal/v1' is not"):
            call(CONFIG)
    monkeypatch.setenv("AUTOMATE_LLM_TEST_URL", "file:///etc/passwd")
    with pytest.raises(PermanentStepError) as info:
        call(CONFIG)
    assert "DJANGO_AUTOMATE.LLM.base_url (from a secret) is not an http(s) URL" in str(info.value)
    assert "passwd" not in str(info.value)
    monkeypatch.delenv("AUTOMATE_LLM_TEST_KEY")
    with pytest.raises(PermanentStepError, match=r"DJANGO_AUTOMATE.LLM.api_key: secret not found: \$secret:LLM_TEST_KEY"):
        call(CONFIG)
    assert fake.calls == 0 and not LlmReservation.objects.exists()


@pytest.mark.parametrize(("raw", "dotted"), [
    ({"LLM": {"base_url": 5}}, "DJANGO_AUTOMATE.LLM.base_url"),
    ({"LLM": {"timeout_seconds": 0}}, "DJANGO_AUTOMATE.LLM.timeout_seconds"),
    ({"LLM": {"timeout_seconds": 4000}}, "DJANGO_AUTOMATE.LLM.timeout_seconds"),
    ({"LLM": {"prices": {"m": {"input_per_1k": -1, "output_per_1k": 0}}}}, "DJANGO_AUTOMATE.LLM.prices.m.input_per_1k"),
    ({"LLM": {"prices": ["m"]}}, "DJANGO_AUTOMATE.LLM.prices"),
    ({"POLICY": {"llm_budget_daily": "lots"}}, "DJANGO_AUTOMATE.POLICY.llm_budget_daily"),
])
def test_bad_llm_settings_name_the_key(raw, dotted):
    with pytest.raises(ImproperlyConfigured, match=dotted.replace(".", r"\.")):
        validate_settings(raw)


def test_the_readme_examples_are_valid():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Connectors: llm\n", 1)[1].split("\n### ", 1)[0]
    step = json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    scope: dict[str, Any] = {}
    exec(section.split("```python\n", 1)[1].split("```", 1)[0], scope)
    settings = validate_settings(scope["DJANGO_AUTOMATE"])
    assert settings.POLICY.llm_budget_daily == 25.0 and "gpt-4o-mini" in settings.LLM.prices
    with override_settings(DJANGO_AUTOMATE=scope["DJANGO_AUTOMATE"]):
        get_connector("llm").validate_config(step["config"], path="steps[0].config")
        with pytest.raises(SpecError, match="model 'gpt-4o' has no price"):
            get_connector("llm").validate_config({**step["config"], "model": "gpt-4o"}, path="steps[0].config")

"""POLICY.llm_budget_daily across processes: 50 concurrent ``llm`` steps in two real worker processes
(--concurrency 25 each) against a budget that fits exactly 10 calls (tests/llm_settings.py)."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest
from django.test import override_settings

from automate.connectors.llm.budget import spend_on, today
from automate.models import AuditLogEntry, ExecutionRun, LlmReservation, OutboxJob, StepRun
from automate.runtime import emit_event
from automate.workflows import publish
from tests import llm_settings
from tests.aio.procs import WorkerProcess, wait_until
from tests.connectors.fake_openai import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)

KEY = f"llmkey{uuid.uuid4().hex}"
RUNS = 50
FITS = 10


def test_fifty_concurrent_calls_in_two_workers_spend_at_most_the_budget(pg_conninfo, tmp_path, monkeypatch):
    bound = Decimal(llm_settings.LLM_MAX_TOKENS) * Decimal("0.001") / 1000  # max_tokens x output price
    cap = Decimal(str(llm_settings.LLM_BUDGET))
    assert FITS * bound <= cap < (FITS + 1) * bound
    with FakeOpenAI() as fake:
        monkeypatch.setenv("AUTOMATE_LLM_TEST_URL", fake.base_url)
        monkeypatch.setenv("AUTOMATE_LLM_TEST_KEY", KEY)
        with override_settings(DJANGO_AUTOMATE=llm_settings.DJANGO_AUTOMATE):  # publish checks the price
            publish("ask", trigger_spec={"event": "q"}, steps=[{"id": "ask", "type": "llm", "max_retries": 3, "config": {
                "model": llm_settings.LLM_MODEL, "max_tokens": llm_settings.LLM_MAX_TOKENS, "temperature": 0,
                "messages": [{"role": "user", "content": "question {{ event.payload.n }}"}]}}])
        fake.gate.clear()  # hold every call the server receives: the 10 that fit stay in flight together
        args = ("--settings", "tests.llm_settings", "--concurrency", "25", "--poll-interval", "0.2",
                "--log-level", "DEBUG")
        workers = [WorkerProcess(pg_conninfo, *args, log=tmp_path / f"w{i}.log") for i in (1, 2)]
        try:
            for w in workers:
                w.wait_for_output("automate-aio-worker ")
            for n in range(RUNS):
                emit_event("q", {"n": n})
            # While the 10 calls that fit are held (reserved), every other run is refused.
            wait_until(lambda: ExecutionRun.objects.filter(status="FAILED").count() == RUNS - FITS, 90,
                       "the runs that do not fit were not all refused")
            assert fake.calls == FITS
            assert spend_on(today()) == (Decimal("0"), FITS * bound)
            fake.gate.set()
            wait_until(lambda: not OutboxJob.objects.exclude(status__in=["COMPLETED", "FAILED"]).exists(), 90,
                       "jobs left unfinished")
            for w in workers:
                w.terminate()
            for w in workers:
                assert w.wait(30) == 0, w.output
        finally:
            for w in workers:
                w.stop()
        assert fake.calls == FITS
    runs = ExecutionRun.objects.all()
    assert sorted(r.status for r in runs) == ["FAILED"] * (RUNS - FITS) + ["SUCCEEDED"] * FITS
    for run in runs.filter(status="FAILED"):
        assert "step 'ask' failed: BudgetExceeded: LLM budget exceeded" in run.error, run.error
    assert StepRun.objects.count() == RUNS  # one attempt each: a refusal is not retried
    denied = AuditLogEntry.objects.filter(action="policy.budget_denied")
    assert denied.count() == RUNS - FITS
    assert {e.resource for e in denied} == {f"llm:{llm_settings.LLM_MODEL}"}
    assert {e.details["run_id"] for e in denied} == {str(r.id) for r in runs.filter(status="FAILED")}
    assert all(e.details["bound_usd"] == "0.001000" and e.details["cap_usd"] == "0.0105" for e in denied)
    # Settled to the usage the fake reported (all of max_tokens: the bound), nothing left reserved.
    assert spend_on(today()) == (FITS * bound, Decimal("0"))
    assert not LlmReservation.objects.exists()
    assert not OutboxJob.objects.filter(status="CLAIMED").exists()
    per_worker = sorted(OutboxJob.objects.values_list("worker_id", flat=True))
    print("jobs per worker:", {w: per_worker.count(w) for w in set(per_worker)})
    # The api key (and the base URL, also a secret here) reach no output, error, audit entry or log line.
    stored = json.dumps([
        list(StepRun.objects.values_list("output", "error")),
        list(runs.values_list("outputs", "error")),
        list(AuditLogEntry.objects.values_list("resource", "details")),
    ], default=str)
    logs = "".join(w.output for w in workers)
    assert "chat/completions" in logs  # httpx's request lines are there, scrubbed
    for secret in (KEY, fake.base_url.split("//")[1]):
        assert secret not in stored and secret not in logs

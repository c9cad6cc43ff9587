"""EXECUTION.sync_threads bounds the threads running sync callables, abandoned (timed-out) ones included."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest
from django.conf import settings
from django.test import override_settings

from automate.connectors.base import StepContext
from automate.connectors.builtin import PythonConnector, stuck_threads
from tests import steps

GATE = {"callable": "tests.steps.wait_for_gate"}


def _ctx(step_id: str) -> StepContext:
    return StepContext(run_id="run", step_id=step_id, attempt=1, workflow="w", event={})


async def _wait_for(predicate: Callable[[], object], message: str, timeout: float = 30) -> None:
    """Poll without blocking the loop (the threads hand their slots back through it)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(0.01)


@pytest.fixture
def two_threads() -> object:
    steps.reset_gate()
    conf = {**settings.DJANGO_AUTOMATE, "EXECUTION": {"sync_threads": 2}}
    with override_settings(DJANGO_AUTOMATE=conf):
        yield
    steps.GATE.set()  # whatever happened, let the threads go


@pytest.mark.timeout(120)
def test_timed_out_calls_keep_their_slot_until_the_thread_returns(two_threads, caplog):
    caplog.set_level(logging.WARNING, logger="automate.connectors.builtin")
    connector = PythonConnector()

    async def scenario() -> None:
        for i in range(10):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await connector.run(GATE, _ctx(f"s{i}"))
            assert steps.GATE_PEAK[0] <= 2, steps.GATE_PEAK
        # The two calls that got a slot are stuck in the callable (a thread may still be starting):
        await _wait_for(lambda: len(steps.GATE_ENTERED) == 2, f"entered: {steps.GATE_ENTERED}")
        assert stuck_threads() == 2
        assert len(steps.GATE_RUNNING) == 2 and steps.GATE_PEAK[0] == 2
        stuck = [r for r in caplog.records if r.getMessage().startswith("automate.step.thread_stuck")]
        assert len(stuck) == 2 and all("tests.steps.wait_for_gate" in r.getMessage() for r in stuck)

        # Released, the threads return and give their slots back...
        steps.GATE.set()
        await _wait_for(lambda: stuck_threads() == 0 and not steps.GATE_RUNNING, "threads never returned")
        # ...so two calls can run at once again, and a third waits for a slot.
        steps.reset_gate()
        calls = [asyncio.create_task(connector.run(GATE, _ctx(f"again{i}"))) for i in range(3)]
        await _wait_for(lambda: len(steps.GATE_ENTERED) == 2, "the freed slots were not reusable")
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(steps.GATE_ENTERED) == 2  # the third waits (it has no slot)
        steps.GATE.set()
        assert await asyncio.gather(*calls) == ["through"] * 3
        assert steps.GATE_PEAK[0] == 2 and stuck_threads() == 0

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_a_sync_callables_exception_reaches_the_step(two_threads):
    async def scenario() -> None:
        with pytest.raises(ValueError, match="will never work"):
            await PythonConnector().run(
                {"callable": "tests.steps.fail_permanently", "kwargs": {"message": "will never work"}}, _ctx("f")
            )
        assert await PythonConnector().run({"callable": "tests.steps.noop"}, _ctx("n")) == {"ok": True}

    asyncio.run(scenario())

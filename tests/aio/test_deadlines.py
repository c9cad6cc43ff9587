"""automate.aio.deadlines: asyncio.timeout's behaviour on one shared timer per loop."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from automate.aio.deadlines import _per_loop, deadline


def run(coro):
    return asyncio.run(coro)


def test_a_step_past_its_deadline_ends_in_timeout_error():
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TimeoutError):
            with deadline(0.05):
                await asyncio.sleep(5)
        return loop.time() - start

    took = run(main())
    assert 0.04 <= took < 1.0


def test_a_step_within_its_deadline_is_untouched_and_leaves_no_entry():
    async def main() -> int:
        with deadline(5):
            await asyncio.sleep(0.01)
            value = 42
        return value + len(_per_loop[asyncio.get_running_loop()].entries)

    assert run(main()) == 42


def test_many_concurrent_deadlines_fire_each_at_its_own_time():
    """Deadlines entered in any order: each task times out at its own deadline, the others go on."""

    async def one(limit: float, sleep: float) -> str:
        try:
            with deadline(limit):
                await asyncio.sleep(sleep)
        except TimeoutError:
            return "timeout"
        return "done"

    async def main() -> list[str]:
        return await asyncio.gather(
            one(0.3, 0.05),   # done long before its deadline
            one(0.05, 1.0),   # times out first (entered after a later deadline: the timer moves earlier)
            one(0.15, 1.0),   # times out second (the timer is set again after the first fired)
            one(1.0, 0.2),    # done
        )

    assert run(main()) == ["done", "timeout", "timeout", "done"]


def test_a_cancellation_from_outside_stays_a_cancellation():
    """A lost lease or a shutdown cancels the step's task: that is not a timeout."""

    async def main() -> None:
        async def step() -> None:
            with deadline(5):
                await asyncio.sleep(5)

        task = asyncio.create_task(step())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())


def test_nested_deadlines_the_inner_one_fires():
    async def main() -> str:
        with deadline(5):
            try:
                with deadline(0.02):
                    await asyncio.sleep(1)
            except TimeoutError:
                return "inner timed out, outer still running"
        return "no timeout"

    assert run(main()) == "inner timed out, outer still running"


def test_a_step_that_swallows_its_cancellation_is_not_cancelled_again():
    async def main() -> str:
        with deadline(0.02) as d:
            with contextlib.suppress(asyncio.CancelledError):  # the step ignores it (bad manners)
                await asyncio.sleep(1)
            await asyncio.sleep(0.05)
        return f"expired={d.expired} cancelling={asyncio.current_task().cancelling()}"

    assert run(main()) == "expired=True cancelling=0"


def test_outside_a_task_it_is_refused():
    async def main() -> None:
        d = deadline(1)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def enter() -> None:
            try:
                d.__enter__()
            except RuntimeError as exc:
                fut.set_result(str(exc))

        loop.call_soon(enter)  # a plain callback: no current task
        assert "inside a task" in await fut

    run(main())

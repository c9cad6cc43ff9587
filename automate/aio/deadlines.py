"""Step deadlines for many concurrent steps on one timer.

``async with asyncio.timeout(s)`` schedules and cancels a timer handle per use: about 4 µs, a measurable
part of a no-op step at the worker's rates. A :class:`Deadlines` keeps the deadlines of all running steps
in a dict and one loop timer at the earliest of them; entering and leaving a deadline is a dict insert
and delete. When the timer fires, every step past its deadline is cancelled and ends in ``TimeoutError``,
exactly as with ``asyncio.timeout`` (the same ``cancelling()``/``uncancel()`` bookkeeping, so a
cancellation from outside, a lost lease or a shutdown, still propagates as ``CancelledError``).

The timer is moved earlier when a deadline comes in before it, and never later: when it fires with
nothing due it is set again at the earliest deadline left (one scan of the running steps, at most once
per deadline period, since short steps leave before theirs).
"""

from __future__ import annotations

import asyncio
import weakref
from types import TracebackType

__all__ = ["Deadline", "Deadlines", "deadline"]


class Deadline:
    """One step's deadline (a sync context manager, entered in the step's task)."""

    __slots__ = ("at", "cancelling", "expired", "owner", "task")

    def __init__(self, owner: Deadlines, limit_s: float) -> None:
        self.owner = owner
        self.at = owner.loop.time() + limit_s
        self.expired = False
        self.task: asyncio.Task[object] | None = None
        self.cancelling = 0

    def __enter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a Deadline must be entered inside a task")
        self.task = task
        self.cancelling = task.cancelling()
        self.owner.add(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.owner.entries.pop(self, None)
        if self.expired:
            assert self.task is not None
            # As asyncio.timeout: take back our cancel request whatever happened (a step that swallowed
            # it must not leave its task marked as being cancelled), and only our own cancel becomes a
            # TimeoutError.
            if self.task.uncancel() <= self.cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc


class Deadlines:
    """The deadlines of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.entries: dict[Deadline, None] = {}  # ordered; values unused
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    def add(self, entry: Deadline) -> None:
        self.entries[entry] = None
        if entry.at < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = entry.at
            self._timer = self.loop.call_at(entry.at, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        now = self.loop.time()
        earliest = float("inf")
        for entry in list(self.entries):
            if entry.at <= now:
                del self.entries[entry]
                if not entry.expired and entry.task is not None and not entry.task.done():
                    entry.expired = True
                    entry.task.cancel()
            elif entry.at < earliest:
                earliest = entry.at
        if earliest != float("inf"):
            self._timer_at = earliest
            self._timer = self.loop.call_at(earliest, self._fire)


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = weakref.WeakKeyDictionary()


def deadline(limit_s: float) -> Deadline:
    """``with deadline(s):`` in a task: like ``async with asyncio.timeout(s)``, on the loop's shared timer."""
    loop = asyncio.get_running_loop()
    owner = _per_loop.get(loop)
    if owner is None:
        owner = _per_loop[loop] = Deadlines(loop)
    return Deadline(owner, limit_s)

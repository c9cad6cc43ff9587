"""The built-in step types of the runtime: ``python`` and ``transform``."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fnmatch
import importlib
import inspect
import logging
import queue
import threading
import weakref
from collections.abc import Callable, Mapping
from functools import lru_cache, partial
from typing import Any, ClassVar

from automate.conf import get_settings
from automate.core.errors import SpecError

from .base import PermanentStepError, StepContext

__all__ = [
    "PythonConnector",
    "TransformConnector",
    "run_sync_bounded",
    "run_sync_in_process",
    "shutdown_process_pool",
    "stuck_threads",
]

log = logging.getLogger(__name__)

# -- sync callables: at most EXECUTION.sync_threads threads, abandoned ones included -------------------------
#
# A thread cannot be interrupted. When a step times out while its sync callable runs, the step fails and
# the thread is abandoned: it goes on until the callable returns, and its result is discarded. An
# abandoned thread keeps its slot until then (anyio's abandon_on_cancel gave the slot back at once, so
# a callable that hangs leaked one more thread per attempt and the bound bounded nothing). When every
# slot is held by a stuck thread, further sync steps wait for a slot (and time out waiting) instead of
# starting more threads. Each abandonment is logged (``automate.step.thread_stuck``) and counted by
# stuck_threads() until the thread returns.
#
# The slots are an asyncio.Semaphore per event loop (the worker has one loop; tests run many, and a
# semaphore belongs to the loop that made it), sized by EXECUTION.sync_threads when the loop first runs a
# sync step. A thread gives its slot back from its own completion, through loop.call_soon_threadsafe.
# The threads are daemon threads, so a hung callable cannot keep the worker process from exiting.
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()
_stuck: dict[int, str] = {}  # id(call) -> label, for abandoned calls whose thread still runs
_stuck_lock = threading.Lock()


class _DaemonThreads:
    """Reused daemon threads (a new thread per call cost about half again as much as a pool's hand-off).

    Not concurrent.futures: its threads are joined at interpreter exit, so a hung callable would keep the
    worker from exiting. The number of threads is bounded by the callers' slots; a thread idle for
    ``idle_seconds`` exits.
    """

    def __init__(self, idle_seconds: float = 30.0) -> None:
        self.idle_seconds = idle_seconds
        self._work: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for work that no submit has reserved yet

    def submit(self, fn: Callable[[], None]) -> None:
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1  # reserve a waiting thread for this item
        self._work.put(fn)
        if spawn:
            threading.Thread(target=self._serve, name="automate-sync", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                fn = self._work.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # nobody reserved this thread: leave
                        self._idle -= 1
                        return
                continue  # reserved just as it timed out: its item is in the queue
            fn()
            with self._lock:
                self._idle += 1


_threads = _DaemonThreads()


def _thread_slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(get_settings().EXECUTION.sync_threads)
    return slots


class _Returns:
    """The calls that returned in their threads, handed back to one loop in batches: the first return
    wakes the loop (``call_soon_threadsafe``, a write to its self-pipe), and every call that returns before
    the loop runs the batch joins it without waking it again. One wake-up per call was most of the cost of
    a short sync step or task."""

    __slots__ = ("items", "lock", "loop", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: list[tuple[_Call, Any, BaseException | None]] = []
        self.lock = threading.Lock()
        self.scheduled = False

    def put(self, call: _Call, result: Any, error: BaseException | None) -> None:  # in a thread
        with self.lock:
            self.items.append((call, result, error))
            if self.scheduled:
                return
            self.scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._run)
        except RuntimeError:  # a closed loop: nobody waits for these results, the slots died with it
            with self.lock:
                self.scheduled = False

    def _run(self) -> None:  # on the loop
        with self.lock:
            items, self.items = self.items, []
            self.scheduled = False
        for call, result, error in items:
            call._settle(result, error)


_returns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Returns] = weakref.WeakKeyDictionary()


def _returns_of(loop: asyncio.AbstractEventLoop) -> _Returns:
    returns = _returns.get(loop)
    if returns is None:
        returns = _returns[loop] = _Returns(loop)
    return returns


def stuck_threads() -> int:
    """How many abandoned threads (their step timed out or was cancelled) are still running a callable."""
    with _stuck_lock:
        return len(_stuck)


class _Call:
    """One sync call in its thread; hands its outcome and its slot back to the loop when it returns."""

    __slots__ = ("abandoned", "done", "fn", "label", "lock", "loop", "returned", "returns", "slots")

    def __init__(
        self, fn: Callable[[], Any], label: str, loop: asyncio.AbstractEventLoop, slots: asyncio.Semaphore
    ) -> None:
        self.fn = fn
        self.label = label
        self.loop = loop
        self.returns = _returns_of(loop)
        self.slots = slots
        self.done: asyncio.Future[Any] = loop.create_future()
        self.abandoned = False  # the awaiting task gave up on it (under lock, with returned)
        self.returned = False
        self.lock = threading.Lock()

    def body(self) -> None:  # in the thread
        result: Any = None
        error: BaseException | None = None
        try:
            result = self.fn()
        except BaseException as exc:  # handed to the awaiting task, re-raised there
            error = exc
        with self.lock:
            self.returned = True
            if self.abandoned:
                with _stuck_lock:
                    _stuck.pop(id(self), None)
                log.info("automate.step.thread_returned: %s", self.label, extra={"callable": self.label})
        self.returns.put(self, result, error)

    def _settle(self, result: Any, error: BaseException | None) -> None:  # on the loop
        self.slots.release()
        if self.done.done():  # cancelled: the step has already failed
            return
        if error is not None:
            self.done.set_exception(error)
        else:
            self.done.set_result(result)

    def abandon(self) -> None:  # on the loop, when the awaiting task is cancelled
        with self.lock:
            if self.returned:
                return  # it had just returned: its slot is on its way back
            self.abandoned = True
            with _stuck_lock:
                _stuck[id(self)] = self.label
                count = len(_stuck)
        log.warning(
            "automate.step.thread_stuck: %s is still running in an abandoned thread (%d stuck)",
            self.label,
            count,
            extra={"callable": self.label, "stuck_threads": count},
        )


async def run_sync_bounded(fn: Callable[[], Any], label: str) -> Any:
    """``fn()`` in a thread, holding one of the loop's EXECUTION.sync_threads slots until it returns.

    Cancelling the caller (a step timeout) abandons the thread; its slot is freed only when it returns.
    ``label`` names the callable in the thread's name and in the ``automate.step.thread_stuck`` warning.
    """
    loop = asyncio.get_running_loop()
    slots = _thread_slots()
    await slots.acquire()
    call = _Call(partial(contextvars.copy_context().run, fn), label, loop, slots)
    try:
        _threads.submit(call.body)
    except BaseException:
        slots.release()
        raise
    try:
        return await call.done
    except asyncio.CancelledError:
        call.abandon()
        raise


# -- WORKER_MODE "process": sync callables in a pool of processes ------------------------------------------
#
# A concurrent.futures.ProcessPoolExecutor of EXECUTION.sync_threads processes, started with "spawn" (a
# fresh interpreter: no copy of the worker's event loop, pool or locks, as fork would give). Each child
# runs django.setup() once, then imports the callable by its dotted path for each call: arguments and
# results cross the process boundary pickled, so they must be JSON values (a step's rendered kwargs and
# output are). A callable's ``ctx`` is a copy whose ``audit()`` entries are collected in the child and
# recorded by the worker when the call returns.
#
# A process pool cannot cancel a call that is running: when a step times out, the step fails and the
# call is abandoned; it goes on in its process, holding its slot (the same slots as the thread mode), until
# it returns. The pool's processes are terminated when the worker exits (``shutdown_process_pool``, also
# run before the interpreter joins the pool at exit), so a hung call cannot keep the worker from exiting.
_process_pool: Any = None
_process_lock = threading.Lock()


def _child_init() -> None:  # in each pool process
    import os

    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        import django

        django.setup()


def _child_call(path: str, args: list[Any], kwargs: dict[str, Any], task: bool, ctx: Any) -> tuple[Any, list[Any]]:
    audits: list[tuple[str, str, dict[str, Any]]] = []
    if task:
        from automate.tasks import load_task

        fn = load_task(path).func
    else:
        fn = _load(path)[0]
        if ctx is not None:
            import dataclasses

            kwargs["ctx"] = dataclasses.replace(ctx, auditor=lambda *entry: audits.append(entry))
    return fn(*args, **kwargs), audits


def _pool() -> Any:
    global _process_pool
    with _process_lock:
        if _process_pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            _process_pool = ProcessPoolExecutor(
                max_workers=get_settings().EXECUTION.sync_threads,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_child_init,
            )
            # Runs before concurrent.futures joins its pools at exit (threading's exit hooks run last-first).
            register = getattr(threading, "_register_atexit", None)
            if register is not None:
                register(shutdown_process_pool)
        return _process_pool


def shutdown_process_pool() -> None:
    """Terminate the process pool (calls still running are abandoned); the next call starts a new one."""
    global _process_pool
    with _process_lock:
        pool, _process_pool = _process_pool, None
    if pool is None:
        return
    for proc in list(getattr(pool, "_processes", {}).values()):
        with contextlib.suppress(Exception):
            proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


async def run_sync_in_process(
    path: str, args: list[Any], kwargs: dict[str, Any], *, label: str, task: bool = False, ctx: Any = None
) -> Any:
    """Call the callable at ``path`` (a ``@task`` when ``task``) in the process pool, holding one of the
    loop's EXECUTION.sync_threads slots until it returns. Cancelling the caller abandons the call."""
    from concurrent.futures.process import BrokenProcessPool

    loop = asyncio.get_running_loop()
    slots = _thread_slots()
    await slots.acquire()
    plain_ctx = None
    if ctx is not None:
        import dataclasses

        plain_ctx = dataclasses.replace(ctx, auditor=None)
    try:
        future = _pool().submit(_child_call, path, args, kwargs, task, plain_ctx)
    except BaseException:
        slots.release()
        raise

    def give_back(_: Any) -> None:  # in the pool's thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: its slots died with it
            loop.call_soon_threadsafe(slots.release)

    future.add_done_callback(give_back)
    try:
        value, audits = await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        if not future.cancel():
            log.warning("automate.step.process_abandoned: %s is still running in its process", label,
                        extra={"callable": label})
        raise
    except BrokenProcessPool:
        shutdown_process_pool()  # a child died (killed, out of memory): the next call gets a new pool
        raise
    if ctx is not None and ctx.auditor is not None:
        for action, resource, details in audits:
            ctx.auditor(action, resource, details)
    return value


def _allowed(path: str) -> bool:
    return _allowed_by(path, get_settings().POLICY.python_allowlist)


@lru_cache(maxsize=4096)
def _allowed_by(path: str, allowlist: tuple[str, ...]) -> bool:
    """Cached per (path, allowlist): every python step asks, and fnmatch per pattern was a measurable
    part of a no-op step. The allowlist is part of the key, so a changed setting is never served stale."""
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in allowlist)


@lru_cache(maxsize=1024)
def _load(path: str) -> tuple[Callable[..., Any], bool, bool]:
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise PermanentStepError(f"callable {path!r} is not a dotted path 'module.function'")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise PermanentStepError(f"callable {path!r} cannot be imported: {exc}") from None
    if not callable(target):
        raise PermanentStepError(f"{path!r} is not callable")
    try:
        wants_ctx = "ctx" in inspect.signature(target).parameters
    except (TypeError, ValueError):
        wants_ctx = False
    return target, inspect.iscoroutinefunction(target), wants_ctx


class PythonConnector:
    """Calls an allowlisted callable: ``{"callable": "app.tasks.send", "kwargs": {...}}``.

    Only paths matching ``POLICY.python_allowlist`` (fnmatch patterns such as ``"app.tasks.*"``) may be
    called; the list is empty by default. Async callables are awaited on the worker's loop; sync ones
    run in a thread (at most ``EXECUTION.sync_threads`` at once), never on the event loop, or in a process
    of the pool when ``WORKER_MODE`` is ``"process"``. A callable
    that declares a ``ctx`` parameter receives the ``StepContext`` (with its idempotency key).
    """

    code: ClassVar[str] = "python"
    needs_network: ClassVar[bool] = False
    is_llm: ClassVar[bool] = False

    def validate_config(self, config: Mapping[str, Any], *, path: str) -> None:
        target = config.get("callable")
        if not isinstance(target, str) or "." not in target:
            raise SpecError(f"{path}.callable: must be a dotted path such as 'app.tasks.send'")
        if "{{" not in target and not _allowed(target):
            raise SpecError(f"{path}.callable: {target!r} is not in DJANGO_AUTOMATE.POLICY.python_allowlist")
        kwargs = config.get("kwargs", {})
        if not isinstance(kwargs, Mapping):
            raise SpecError(f"{path}.kwargs: must be an object of keyword arguments")

    async def run(self, config: Mapping[str, Any], ctx: StepContext) -> Any:
        target = config.get("callable")
        if not isinstance(target, str):
            raise PermanentStepError("config.callable must be a dotted path")
        if not _allowed(target):
            raise PermanentStepError(f"callable {target!r} is not in DJANGO_AUTOMATE.POLICY.python_allowlist")
        fn, is_async, wants_ctx = _load(target)
        kwargs = dict(config.get("kwargs") or {})
        if wants_ctx:
            kwargs["ctx"] = ctx
        if is_async:
            return await fn(**kwargs)
        if get_settings().WORKER_MODE == "process":
            step_ctx = kwargs.pop("ctx", None)
            return await run_sync_in_process(target, [], kwargs, label=target, ctx=step_ctx)
        # On timeout the step fails and the thread is abandoned, keeping its slot until it returns.
        return await run_sync_bounded(partial(fn, **kwargs), target)


class TransformConnector:
    """Builds its output from templates and ``$expr``: the rendered ``config.output`` is the output."""

    code: ClassVar[str] = "transform"
    needs_network: ClassVar[bool] = False
    is_llm: ClassVar[bool] = False

    def validate_config(self, config: Mapping[str, Any], *, path: str) -> None:
        if "output" not in config:
            raise SpecError(f"{path}.output: required (the value to build, with templates and $expr)")

    async def run(self, config: Mapping[str, Any], ctx: StepContext) -> Any:
        return config.get("output")

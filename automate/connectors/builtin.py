"""The built-in step types of the runtime: ``python`` and ``transform``."""

from __future__ import annotations

import asyncio
import fnmatch
import importlib
import inspect
import weakref
from collections.abc import Callable, Mapping
from functools import lru_cache, partial
from typing import Any, ClassVar

import anyio
import anyio.to_thread

from automate.conf import get_settings
from automate.core.errors import SpecError

from .base import PermanentStepError, StepContext

__all__ = ["PythonConnector", "TransformConnector"]

# One limiter per event loop (tests run many loops; a limiter belongs to the loop that made it).
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


def _thread_limiter() -> anyio.CapacityLimiter:
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = anyio.CapacityLimiter(get_settings().EXECUTION.sync_threads)
    return limiter


def _allowed(path: str) -> bool:
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in get_settings().POLICY.python_allowlist)


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
    run in a thread (at most ``EXECUTION.sync_threads`` at once), never on the event loop. A callable
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
        # abandon_on_cancel: a thread cannot be interrupted; on timeout the step fails and the thread
        # is left to finish on its own (its result is discarded).
        return await anyio.to_thread.run_sync(
            partial(fn, **kwargs), limiter=_thread_limiter(), abandon_on_cancel=True
        )


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

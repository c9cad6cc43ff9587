"""Callables that workflow steps call in the tests (allowlisted as ``tests.steps.*`` in tests/settings.py)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

CALLS: list[tuple[str, str, int]] = []
THREADS: list[str] = []


def noop() -> dict[str, bool]:
    return {"ok": True}


async def anoop() -> dict[str, bool]:
    return {"ok": True}


def echo(ctx: Any, **kwargs: Any) -> dict[str, Any]:
    CALLS.append((ctx.run_id, ctx.step_id, ctx.attempt))
    THREADS.append(threading.current_thread().name)
    return {"kwargs": kwargs, "idempotency_key": ctx.idempotency_key}


async def asleep(seconds: float = 0.05, **_: Any) -> dict[str, float]:
    await asyncio.sleep(seconds)
    return {"slept": seconds}


def block(seconds: float = 0.2) -> str:
    time.sleep(seconds)
    return "blocked"


def mark(ctx: Any, path: str, sleep: float = 0.0) -> str:
    """Append '<run>:<step>' to a file (visible across worker processes), then optionally sleep."""
    with open(path, "a") as fh:
        fh.write(f"{ctx.run_id}:{ctx.step_id}\n")
        fh.flush()
        os.fsync(fh.fileno())
    if sleep:
        time.sleep(sleep)
    return ctx.step_id


def flaky(ctx: Any, path: str, failures: int, kind: str = "timeout") -> dict[str, int]:
    """Fail ``failures`` times (counted in a file), then succeed."""
    p = Path(path)
    count = int(p.read_text()) if p.exists() else 0
    p.write_text(str(count + 1))
    if count < failures:
        if kind == "timeout":
            raise TimeoutError("upstream timed out")
        if kind == "connection":
            raise ConnectionResetError("connection reset by peer")
        raise ValueError("bad input, will never work")
    return {"calls": count + 1}


def fail_permanently(message: str = "nope") -> None:
    raise ValueError(message)


def leak(ctx: Any, secret: str) -> dict[str, str]:
    """Returns a secret value under innocent keys: redaction must scrub it from the stored output."""
    return {"note": f"the value is {secret}", "copy": secret}


def leak_raise(ctx: Any, secret: str) -> None:
    """Raises an exception whose message contains a secret value: redaction must scrub the stored error."""
    raise ValueError(f"upstream rejected the token {secret} (copy: {secret!r})")


# A sync callable that blocks until GATE is set; GATE_RUNNING holds the threads inside it right now and
# GATE_PEAK the most there ever were at once (tests/test_sync_threads.py).
GATE = threading.Event()
GATE_RUNNING: set[int] = set()
GATE_ENTERED: list[int] = []
GATE_PEAK = [0]
_gate_lock = threading.Lock()


def wait_for_gate() -> str:
    me = threading.get_ident()
    with _gate_lock:
        GATE_RUNNING.add(me)
        GATE_ENTERED.append(me)
        GATE_PEAK[0] = max(GATE_PEAK[0], len(GATE_RUNNING))
    try:
        GATE.wait()
    finally:
        with _gate_lock:
            GATE_RUNNING.discard(me)
    return "through"


def reset_gate() -> None:
    GATE.clear()
    with _gate_lock:
        GATE_RUNNING.clear()
        GATE_ENTERED.clear()
        GATE_PEAK[0] = 0


def not_json() -> object:
    return object()


def poison(kind: str = "nul", how: str = "return") -> Any:
    """Return (or raise with) a value PostgreSQL cannot store: the worker must fail only this step."""
    values: dict[str, Any] = {
        "nul": "before\x00after",
        "surrogate": "lone \ud800 surrogate",
        "nan": {"v": float("nan")},
        "deep": _nested(150),
        "huge": "x" * (2 * 1024 * 1024),
    }
    value = values[kind]
    if how == "raise":
        raise ValueError(value if isinstance(value, str) else repr(value))
    return value


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {}
    for _ in range(depth):
        node = {"d": node}
    return node


def slow_first_time(ctx: Any, path: str, seconds: float) -> str:
    """Mark the call; sleep only on the first call of this run's step (in flight at a shutdown)."""
    p = Path(path)
    me = f"{ctx.run_id}:{ctx.step_id}"
    first = not p.exists() or me not in p.read_text().split()
    mark(ctx, path)
    if first:
        time.sleep(seconds)
    return ctx.step_id

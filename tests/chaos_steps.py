"""Step callables and a secret backend for the fault-injection test (tests/aio/test_chaos.py).

The event payload chooses the fault: ``{"fault": ..., "at": <step id>, "n": ..., "sleep": ...}``; a
callable misbehaves only when it runs as step ``at``, so the test knows each job's expected outcome.

Every execution appends two lines to the side-effect file ``path`` (``O_APPEND``, one ``write`` per line, so
lines of concurrent worker processes never interleave):

    S <token> <run_id>:<step_id> <attempt> <pid> <unix time>      when the callable starts
    E <token> <outcome> <unix time>                               when it returns (ok), raises (err) or
                                                                  is cancelled (cancel, async only)

A start without an end means the process died while the step was in flight.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
import uuid
from typing import Any

#: The value of ``$secret:CHAOS_TOKEN``; it must never be stored (outputs and errors are redacted).
TOKEN = "chaos-tok-6f1d0e9b7c"


def _write(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _start(path: str, ctx: Any) -> str:
    token = uuid.uuid4().hex[:12]
    _write(path, f"S {token} {ctx.run_id}:{ctx.step_id} {ctx.attempt} {os.getpid()} {time.time():.6f}")
    return token


def _end(path: str, token: str, outcome: str) -> None:
    _write(path, f"E {token} {outcome} {time.time():.6f}")


def nested_dict(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": True}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def _behave(ctx: Any, fault: str, at: str, n: int, extra: dict[str, Any]) -> Any:
    """The output of a healthy step, or the fault the payload asked for when this step is ``at``."""
    out: dict[str, Any] = {"n": n, "where": ctx.step_id}
    if "token" in extra:
        out["echo"] = f"token={extra['token']}"  # a secret value in an innocent key: must be redacted
    if fault == "when_list" and ctx.step_id == "a":
        # ~600 KB: storable, but a `when` that joins it twice builds 1.2 M characters (the rules allow 1 M)
        out["parts"] = ["y" * 1000] * 600
        return out
    if ctx.step_id != at:
        return out
    if fault == "nul_output":
        return {"n": n, "text": "before\x00after"}
    if fault == "nul_raise":
        raise ValueError(f"chaos poison #{n}: NUL \x00 inside the message")
    if fault == "surrogate_output":
        return "lone \ud800 surrogate"  # a bare str: not a dict, so no container check catches it
    if fault == "surrogate_nested":
        return {"n": n, "text": "lone \ud800 surrogate"}
    if fault == "surrogate_raise":
        raise ValueError(f"chaos poison #{n}: lone \udfff surrogate in the message")
    if fault == "nan_output":
        return {"n": n, "v": float("nan"), "w": float("inf")}
    if fault == "deep_output":
        return {"n": n, "deep": nested_dict(50)}
    if fault == "too_deep_output":
        return {"n": n, "deep": nested_dict(300)}
    if fault == "big_output":
        return {"n": n, "blob": "x" * 2_000_000}
    if fault == "raise":
        raise ValueError(f"chaos step failure #{n}")
    if fault == "park_ok" and ctx.attempt == 1:
        raise ConnectionRefusedError(f"chaos upstream refused #{n}")
    if fault == "park_fail":
        raise ConnectionRefusedError(f"chaos upstream refused #{n}")
    return out


def act(ctx: Any, path: str, fault: str = "ok", at: str = "", n: int = 0, sleep: float = 0.0, **extra: Any) -> Any:
    """A sync step (runs in a worker thread)."""
    token = _start(path, ctx)
    try:
        if sleep:
            time.sleep(min(float(sleep), 0.05))  # sync steps stay short: a thread cannot be cancelled
        out = _behave(ctx, fault, at, n, extra)
    except BaseException:
        _end(path, token, "err")
        raise
    _end(path, token, "ok")
    return out


async def aact(
    ctx: Any, path: str, fault: str = "ok", at: str = "", n: int = 0, sleep: float = 0.0, **extra: Any
) -> Any:
    """An async step (on the worker's loop): sleeps, times out and is cancelled cleanly."""
    token = _start(path, ctx)
    try:
        if ctx.step_id == at and (fault == "timeout_fail" or (fault == "timeout_ok" and ctx.attempt == 1)):
            await asyncio.sleep(30)  # far beyond the step's timeout_seconds
        if sleep:
            await asyncio.sleep(float(sleep))
        out = _behave(ctx, fault, at, n, extra)
    except asyncio.CancelledError:
        _end(path, token, "cancel")
        raise
    except BaseException:
        _end(path, token, "err")
        raise
    _end(path, token, "ok")
    return out


class ChaosSecrets:
    """``SECRETS.backend`` of tests/chaos_settings.py: one good secret, one that fails at random (a flaky
    vault: transient ConnectionError or a permanent internal error), and nothing else (missing)."""

    def __init__(self) -> None:
        self._rng = random.Random(f"{os.environ.get('AUTOMATE_CHAOS_SEED', '0')}-{os.getpid()}")
        self._lock = threading.Lock()

    def get(self, name: str) -> str | None:
        if name == "CHAOS_TOKEN":
            return TOKEN
        if name == "CHAOS_FLAKY":
            with self._lock:
                r = self._rng.random()
            if r < 0.25:
                raise ConnectionError("chaos vault unreachable")
            if r < 0.35:
                raise RuntimeError("chaos vault internal error")
            return "flaky-but-fine"
        return None

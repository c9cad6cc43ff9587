"""Step callables of tests/test_worker_modes.py: they report where they ran."""

from __future__ import annotations

import os
import threading
import time
from typing import Any


def where(ctx: Any, n: int) -> dict[str, Any]:
    ctx.audit("test.worker_mode", f"run:{ctx.run_id}", {"n": n})  # crosses back from a pool process too
    return {"pid": os.getpid(), "thread": threading.current_thread().name, "n": n, "key": ctx.idempotency_key}


def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"

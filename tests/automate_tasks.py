"""Django tasks the tests enqueue on ``automate.tasks.AutomateTaskBackend`` (run by real workers)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

from automate.tasks import task

RAN: list[tuple[str, Any]] = []


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def noop() -> None:
    return None


@task
def where() -> dict[str, Any]:
    return {"thread": threading.current_thread().name, "pid": os.getpid()}


@task
async def awhere(n: int = 0) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"thread": threading.current_thread().name, "pid": os.getpid(), "n": n}


@task(priority=10)
def note(path: str, name: str) -> str:
    with open(path, "a") as fh:
        fh.write(name + "\n")
    return name


@task
def leak(secret: str) -> None:
    raise ValueError(f"upstream refused api_key={secret} token sk-live-abcdefghijklmnopqrstuvwx")


@task
def not_json() -> float:
    return float("nan")


@task
def slow(seconds: float) -> str:
    time.sleep(seconds)
    return "late"


@task(takes_context=True)
def with_context(context: Any, tag: str) -> dict[str, Any]:
    return {"id": context.task_result.id, "attempt": context.attempt, "tag": tag}


@task
def touch(path: str) -> str:
    Path(path).write_text("ran")
    return "ran"


def plain_function(path: str) -> None:  # not a @task: a job naming it must never call it
    Path(path).write_text("called")

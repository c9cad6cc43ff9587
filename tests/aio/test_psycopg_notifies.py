"""The psycopg behaviour the listener relies on (pyproject pins psycopg>=3.2.4 for it).

The listener alternates ``notifies(timeout=health_interval)`` with a health probe on the same connection.
Before psycopg 3.2.4 (psycopg#962) a NOTIFY that arrived while the generator was not running (during the
probe) was dropped, and the worker slept until its fallback poll.
"""

from __future__ import annotations

import asyncio
import re
from importlib.metadata import version
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_psycopg_meets_the_pinned_floor():
    pinned = re.search(r'"psycopg\[binary\]>=([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned, "pyproject.toml no longer pins a psycopg floor"
    floor = tuple(int(p) for p in pinned.group(1).split("."))
    assert floor >= (3, 2, 4)
    installed = tuple(int(p) for p in re.findall(r"\d+", version("psycopg"))[:3])
    assert installed >= floor


def test_a_notify_arriving_during_the_health_probe_is_delivered(pg_conninfo):
    async def scenario() -> list[str]:
        async with await psycopg.AsyncConnection.connect(pg_conninfo, autocommit=True) as conn:
            await conn.execute("LISTEN automate_probe_test")
            async for _ in conn.notifies(timeout=0.01):
                pass  # a quiet period ends...
            # ...the probe runs, and a notification arrives with its reply (this session's own NOTIFY,
            # delivered when the statement commits: no timing involved).
            await conn.execute("SELECT pg_notify('automate_probe_test', 'during-probe')")
            return [n.payload async for n in conn.notifies(timeout=5, stop_after=1)]

    assert asyncio.run(scenario()) == ["during-probe"]

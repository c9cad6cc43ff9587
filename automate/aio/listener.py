"""The wake-up listener: one dedicated connection (outside the pool) running LISTEN.

LISTEN needs a session-mode connection (not PgBouncer transaction mode). The connection is probed every
``health_interval`` seconds, so a dead socket is found even when nothing is being notified; on any
failure it reconnects with jittered exponential backoff and asks for a claim straight away, since
notifications sent while it was away are lost.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import psycopg
from psycopg import sql

from . import metrics

__all__ = ["Listener"]

log = logging.getLogger(__name__)


class Listener:
    def __init__(
        self,
        conninfo: str,
        channels: tuple[str, ...],
        on_notify: Callable[[str], None],
        *,
        health_interval: float = 5.0,
        on_connected: Callable[[], None] | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        self.conninfo = conninfo
        self.channels = channels
        self.on_notify = on_notify
        self.on_connected = on_connected
        self.health_interval = health_interval
        self.max_backoff = max_backoff
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.backend_pid: int | None = None

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self._session()
            except (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError, OSError) as exc:
                self.connected.clear()
                failures += 1
                self.reconnects += 1
                metrics.listener_reconnected()
                # Full jitter: spread the reconnects of many workers after a database restart.
                delay = random.uniform(0, min(self.max_backoff, 0.05 * 2**failures))
                log.warning(
                    "automate.listener.reconnecting",
                    extra={"error": type(exc).__name__, "delay_s": round(delay, 3), "failures": failures},
                )
                await asyncio.sleep(delay)
            else:  # pragma: no cover - _session only returns by raising
                return
            if self.connected.is_set():
                failures = 0

    async def _session(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, connect_timeout=10, application_name="automate-listener"
        )
        async with conn:
            for channel in self.channels:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self.backend_pid = conn.info.backend_pid
            self.connected.set()
            if self.on_connected is not None:
                self.on_connected()  # claim now: anything notified while we were away was missed
            while True:
                async for note in conn.notifies(timeout=self.health_interval):
                    self.on_notify(note.channel)
                # A quiet period: probe the socket so a dead connection is noticed.
                async with asyncio.timeout(max(self.health_interval, 1.0)):
                    await conn.execute("SELECT 1")

"""Helpers shared by the http, slack and SSRF guard tests (servers live in tests/servers.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from django.test import override_settings

from automate.aio.config import WorkerConfig
from automate.aio.worker import Worker, WorkerStats
from automate.connectors import StepContext
from automate.connectors.http import aclose_clients
from tests.settings import DJANGO_AUTOMATE as BASE


class Audits(list):
    """Collects what a connector writes through ``StepContext.audit``: (action, resource, details)."""

    def __call__(self, action: str, resource: str, details: dict[str, Any]) -> None:
        self.append((action, resource, details))

    def actions(self) -> list[str]:
        return [a for a, _, _ in self]


def make_ctx(audits: Audits | None = None, *, run_id: str = "run-1", step_id: str = "call", attempt: int = 1) -> StepContext:
    return StepContext(run_id, step_id, attempt, "wf", {}, auditor=audits if audits is not None else Audits())


def automate(*, allow: Iterable[str] = (), allow_ssrf: bool = False, **http: Any) -> override_settings:
    """tests.settings' DJANGO_AUTOMATE with an SSRF allowlist, allow_ssrf and HTTP settings."""
    policy = {**BASE.get("POLICY", {}), "ssrf_allowlist": list(allow), "allow_ssrf": allow_ssrf}
    return override_settings(DJANGO_AUTOMATE={**BASE, "POLICY": policy, "HTTP": http})


def worker(conninfo: str, **overrides: Any) -> WorkerConfig:
    """An in-process drain worker's config (as tests/aio/conftest.py's make_config, from ``pg_conninfo``)."""
    defaults: dict[str, Any] = {
        "conninfo": conninfo, "drain": True, "poll_interval": 0.2, "lease_seconds": 5.0, "health_interval": 1.0,
        "shutdown_grace": 2.0, "batch_size": 50, "concurrency": 50,
    }
    return WorkerConfig(**(defaults | overrides))


def drain(cfg: WorkerConfig, timeout: float = 60) -> WorkerStats:
    """Run an in-process worker until the outbox is empty, then close its loop's shared HTTP client."""

    async def main() -> WorkerStats:
        try:
            return await asyncio.wait_for(Worker(cfg).run(), timeout)
        finally:
            await aclose_clients()

    return asyncio.run(main())

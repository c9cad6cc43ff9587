from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from automate.aio.config import WorkerConfig
from automate.aio.worker import Worker, WorkerStats


@pytest.fixture
def make_config(pg_conninfo: str) -> Callable[..., WorkerConfig]:
    def make(**overrides: Any) -> WorkerConfig:
        defaults: dict[str, Any] = {
            "conninfo": pg_conninfo,
            "drain": True,
            "poll_interval": 0.2,
            "lease_seconds": 5.0,
            "health_interval": 1.0,
            "shutdown_grace": 2.0,
            "batch_size": 50,
            "concurrency": 50,
        }
        return WorkerConfig(**(defaults | overrides))

    return make


def drain(cfg: WorkerConfig, timeout: float = 60) -> WorkerStats:
    """Run a worker until the outbox is empty (cfg.drain) and return its stats."""

    async def main() -> WorkerStats:
        return await asyncio.wait_for(Worker(cfg).run(), timeout)

    return asyncio.run(main())


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = trace._TRACER_PROVIDER
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE._done = False
    trace.set_tracer_provider(provider)
    import automate.aio.tracing as aio_tracing

    aio_tracing.tracer = trace.get_tracer("automate.aio")
    import automate.aio.executor as executor

    executor.tracer = aio_tracing.tracer
    yield exporter
    trace._TRACER_PROVIDER = previous

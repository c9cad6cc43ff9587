"""The worker's configuration: one frozen value, built once at start-up (cli) or by tests."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

__all__ = ["WorkerConfig", "new_worker_id"]


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    conninfo: str
    worker_id: str = field(default_factory=new_worker_id)
    concurrency: int = 100  # size of the step semaphore
    batch_size: int = 10  # at most this many jobs per claim statement
    # Jobs claimed beyond `concurrency` and waiting for a step permit (None: one batch). The worker holds
    # at most concurrency + prefetch jobs.
    prefetch: int | None = None
    lease_seconds: float = 30.0
    poll_interval: float = 5.0  # fallback poll when no NOTIFY arrives
    drain: bool = False  # exit once the outbox is empty
    enabled: bool = True  # DJANGO_AUTOMATE.ENABLED
    step_timeout: float = 60.0  # EXECUTION.timeout_seconds
    max_retries: int = 3  # EXECUTION.max_retries
    park_after: float = 10.0  # retry waits longer than this are parked in the database
    shutdown_grace: float = 30.0
    flush_interval: float = 0.002  # group commit window for status writes
    health_interval: float = 5.0  # listener socket probe
    pool_size: int = 4
    mode: str = "thread"

    def __post_init__(self) -> None:
        for name in ("concurrency", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lease_seconds", "poll_interval", "step_timeout", "health_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_retries < 0 or self.shutdown_grace < 0 or self.park_after < 0:
            raise ValueError("max_retries, shutdown_grace and park_after must be >= 0")
        if self.prefetch is not None and self.prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {self.prefetch}")

    @property
    def prefetch_jobs(self) -> int:
        return self.batch_size if self.prefetch is None else self.prefetch

    @property
    def lease_renew_every(self) -> float:
        return max(self.lease_seconds / 3, 0.05)

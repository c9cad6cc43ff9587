"""The worker's Prometheus metrics, and its ``/metrics`` endpoint (``--metrics-port``, ``METRICS_EXPORT``).

The executor, worker and listener call the one-line functions below at the points that count. They do
nothing until :func:`enable` is called (the CLI does, when ``METRICS_EXPORT`` is true and a port is
given), so a worker without metrics pays one call and a test of a global per event. Enabled, each label
set is bound once (``.labels()`` cached in a dict) so the hot path is one ``inc``/``observe``.

Labels hold no ids: workflow slugs (at most :data:`MAX_WORKFLOWS`, then ``other``), connector names and
outcomes. Served metrics:

    automate_jobs_claimed_total                        jobs claimed
    automate_claim_batch_size                          histogram of rows per claim statement
    automate_runs_total{workflow,status}               runs that ended (SUCCEEDED / FAILED)
    automate_step_attempts_total{connector,outcome}    attempts: succeeded / retrying / failed / waiting
    automate_step_duration_seconds{connector}          histogram of attempt durations
    automate_step_retries_total{connector}             retries scheduled
    automate_steps_in_flight                           step attempts holding a concurrency permit
    automate_wakeups_total{source}                     claim loop woken by a NOTIFY, or by the poll
    automate_listener_reconnects_total                 LISTEN connection re-established
    automate_outbox_depth{state}, automate_outbox_oldest_due_age_seconds   from the database, at scrape
    automate_llm_spend_usd_today{state}                spent / reserved today, from the database (llm)
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "MAX_WORKFLOWS",
    "claimed",
    "enable",
    "enabled",
    "listener_reconnected",
    "notified",
    "run_finished",
    "semaphore",
    "serve",
    "step_finished",
    "waited",
]

log = logging.getLogger(__name__)

MAX_WORKFLOWS = 500

JOBS_CLAIMED = Counter("automate_jobs_claimed_total", "Outbox jobs claimed by this worker")
CLAIM_BATCH = Histogram(
    "automate_claim_batch_size", "Jobs returned by one claim statement",
    buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
)
RUNS = Counter("automate_runs_total", "Workflow runs that ended, by workflow and final status", ["workflow", "status"])
STEP_ATTEMPTS = Counter(
    "automate_step_attempts_total", "Step attempts, by connector and outcome", ["connector", "outcome"]
)
STEP_DURATION = Histogram(
    "automate_step_duration_seconds", "Duration of one step attempt", ["connector"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RETRIES = Counter("automate_step_retries_total", "Step retries scheduled, by connector", ["connector"])
STEPS_IN_FLIGHT = Gauge(
    "automate_steps_in_flight", "Step attempts running now (holding a concurrency permit)",
    multiprocess_mode="livesum",
)
WAKEUPS = Counter("automate_wakeups_total", "Claim loop wake-ups, by NOTIFY or by the fallback poll", ["source"])
LISTENER_RECONNECTS = Counter("automate_listener_reconnects_total", "LISTEN connection re-established")

_on = False
_attempts: dict[tuple[str, str], Any] = {}
_durations: dict[str, Any] = {}
_retries: dict[str, Any] = {}
_runs: dict[tuple[str, str], Any] = {}
_notify = WAKEUPS.labels("notify")
_poll = WAKEUPS.labels("poll")


def enable(on: bool = True) -> None:
    global _on
    _on = on


def enabled() -> bool:
    return _on


# -- the one-line hooks ---------------------------------------------------------------------------------
def claimed(n: int) -> None:
    if _on:
        JOBS_CLAIMED.inc(n)
        CLAIM_BATCH.observe(n)


def step_finished(connector: str, outcome: str, started: datetime | None) -> None:
    """One attempt ended: ``outcome`` is its recorded status (SUCCEEDED, RETRYING, FAILED, WAITING)."""
    if not _on:
        return
    key = (connector, outcome)
    child = _attempts.get(key)
    if child is None:
        child = _attempts[key] = STEP_ATTEMPTS.labels(connector, outcome.lower())
    child.inc()
    if started is not None:
        hist = _durations.get(connector)
        if hist is None:
            hist = _durations[connector] = STEP_DURATION.labels(connector)
        hist.observe(max((datetime.now(UTC) - started).total_seconds(), 0.0))
    if outcome == "RETRYING":
        retry = _retries.get(connector)
        if retry is None:
            retry = _retries[connector] = RETRIES.labels(connector)
        retry.inc()


def run_finished(workflow: str, status: str) -> None:
    if not _on:
        return
    key = (workflow, status)
    child = _runs.get(key)
    if child is None:
        known = {w for w, _s in _runs}
        label = workflow if workflow in known or len(known) < MAX_WORKFLOWS else "other"
        child = _runs[key] = RUNS.labels(label, status)
    child.inc()


def notified() -> None:
    if _on:
        _notify.inc()


def waited(woken: bool) -> None:
    """The claim loop's wait ended; ``woken`` False means the poll interval elapsed."""
    if _on and not woken:
        _poll.inc()


def listener_reconnected() -> None:
    if _on:
        LISTENER_RECONNECTS.inc()


class _CountingSemaphore(asyncio.Semaphore):
    """The step semaphore, counting its held permits in ``automate_steps_in_flight``."""

    async def acquire(self) -> Any:
        result = await super().acquire()
        STEPS_IN_FLIGHT.inc()
        return result

    def release(self) -> None:
        super().release()
        STEPS_IN_FLIGHT.dec()


def semaphore(size: int) -> asyncio.Semaphore:
    """The worker's step semaphore: a plain one when metrics are off."""
    return _CountingSemaphore(size) if _on else asyncio.Semaphore(size)


# -- the endpoint ---------------------------------------------------------------------------------------
def _pg_fetch(conninfo: str) -> Any:
    """Outbox figures over one sync connection kept by the scrape thread (re-opened after an error)."""
    import psycopg

    from automate import queries

    state: dict[str, Any] = {"conn": None}
    lock = threading.Lock()

    def fetch() -> tuple[int, int, int, float]:
        with lock:
            conn = state["conn"]
            try:
                if conn is None or conn.closed:
                    conn = state["conn"] = psycopg.connect(
                        conninfo, autocommit=True, connect_timeout=5, application_name="automate-metrics"
                    )
                row = conn.execute(queries.METRICS_OUTBOX).fetchone()
            except Exception:
                if conn is not None:
                    conn.close()
                state["conn"] = None
                raise
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2]), float(row[3])

    return fetch


def serve(port: int, conninfo: str, addr: str = "0.0.0.0") -> Any:  # noqa: S104 - scraped from outside
    """Serve ``/metrics`` on ``addr:port`` from a daemon thread; return the server (``.server_port``)."""
    from prometheus_client import start_http_server

    from automate.observability.metrics import (
        LlmSpendCollector,
        OutboxCollector,
        llm_spend_function,
        registry_for_scrape,
    )

    extra: list[Any] = [OutboxCollector(_pg_fetch(conninfo))]
    spend = llm_spend_function()
    if spend is not None:
        extra.append(LlmSpendCollector(spend))
    server, _thread = start_http_server(port, addr, registry=registry_for_scrape(*extra))
    return server

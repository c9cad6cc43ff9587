"""Prometheus metrics shared by the web process and the worker.

- ``automate_events_emitted_total{type}``: counted by ``emit_event`` in the process that emits (the web
  process), when ``METRICS_EXPORT`` is true. ``type`` is bounded: the event type's first dotted segment
  and ``.*`` (``order.*``), redacted, at most :data:`MAX_TYPE_LABELS` distinct values, then ``other``.
- ``automate_outbox_depth{state}`` and ``automate_outbox_oldest_due_age_seconds``: read from the database
  at scrape time (:class:`OutboxCollector`, one query, cached for a few seconds), so every process that is
  scraped reports the same figures.
- ``automate_llm_spend_usd_today``: the LLM connector's spend today, when that connector is installed.

No label ever holds an id (run, event, trace). :func:`render` builds a scrape for the Django view, in the
client's multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

__all__ = [
    "EVENTS_EMITTED",
    "MAX_TYPE_LABELS",
    "LlmSpendCollector",
    "OutboxCollector",
    "event_emitted",
    "event_type_label",
    "registry_for_scrape",
    "render",
]

log = logging.getLogger(__name__)

MAX_TYPE_LABELS = 50

EVENTS_EMITTED = Counter(
    "automate_events_emitted_total", "Events stored by emit_event, by type pattern (first segment.*)", ["type"]
)

_type_labels: dict[str, Any] = {}  # first segment -> bound child
_type_lock = threading.Lock()


def event_type_label(event_type: str) -> str:
    """``order.created`` -> ``order.*``, redacted; ``other`` once :data:`MAX_TYPE_LABELS` are in use."""
    from .context import current_redactor

    head = event_type.split(".", 1)[0]
    label = current_redactor().redact_str(f"{head}.*")
    return label if "[REDACTED]" not in label else "other"


def event_emitted(event_type: str) -> None:
    head = event_type.split(".", 1)[0]
    child = _type_labels.get(head)
    if child is None:
        with _type_lock:
            child = _type_labels.get(head)
            if child is None:
                label = event_type_label(event_type) if len(_type_labels) < MAX_TYPE_LABELS else "other"
                child = _type_labels[head] = EVENTS_EMITTED.labels(label)
    child.inc()


OutboxFigures = tuple[int, int, int, float]  # due, scheduled, claimed, oldest due age (s)


class OutboxCollector(Collector):
    """The outbox as the database sees it, read at scrape time with ``automate.queries.METRICS_OUTBOX``
    through ``fetch`` (one row: due, scheduled, claimed, oldest due age), cached for ``ttl`` seconds so
    several scrapers (or a burst of scrapes) cost one query. A failing query is logged and the gauges are
    left out of that scrape (an absent series, not a false zero)."""

    def __init__(self, fetch: Callable[[], OutboxFigures], ttl: float = 2.0) -> None:
        self.fetch = fetch
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, OutboxFigures] | None = None

    def _figures(self) -> OutboxFigures | None:
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self.ttl:
                return self._cached[1]
            try:
                figures = self.fetch()
            except Exception as exc:
                log.warning("automate.metrics.outbox_query_failed", extra={"error": type(exc).__name__})
                return None
            self._cached = (now, figures)
            return figures

    def describe(self) -> Iterator[Any]:
        return iter(())  # collected lazily: registering must not query the database

    def collect(self) -> Iterator[Any]:
        figures = self._figures()
        if figures is None:
            return
        due, scheduled, claimed, age = figures
        depth = GaugeMetricFamily(
            "automate_outbox_depth", "Outbox jobs not finished, from the database", labels=["state"]
        )
        depth.add_metric(["due"], due)
        depth.add_metric(["scheduled"], scheduled)
        depth.add_metric(["claimed"], claimed)
        yield depth
        yield GaugeMetricFamily(
            "automate_outbox_oldest_due_age_seconds",
            "Seconds since the oldest due, unclaimed job became due (0 when none), from the database",
            value=age,
        )


def django_outbox_fetch(using: str = "default") -> Callable[[], OutboxFigures]:
    def fetch() -> OutboxFigures:
        from django.db import connections

        from automate import queries

        with connections[using].cursor() as cursor:
            cursor.execute(queries.METRICS_OUTBOX)
            row = cursor.fetchone()
        return int(row[0]), int(row[1]), int(row[2]), float(row[3])

    return fetch


class LlmSpendCollector(Collector):
    """``automate_llm_spend_usd_today{state="spent"|"reserved"}`` from the ``llm`` connector's
    ``spend_today()`` (``(spent, reserved)`` USD of the current UTC day, read from the database, so every
    process reports the same figures); nothing when the query fails."""

    def __init__(self, spend_today: Callable[[], Any]) -> None:
        self.spend_today = spend_today

    def describe(self) -> Iterator[Any]:
        return iter(())

    def collect(self) -> Iterator[Any]:
        try:
            figures = self.spend_today()
            spent, reserved = (figures, 0.0) if isinstance(figures, int | float) else figures
            spent, reserved = float(spent), float(reserved)
        except Exception as exc:
            log.warning("automate.metrics.llm_spend_failed", extra={"error": type(exc).__name__})
            return
        family = GaugeMetricFamily(
            "automate_llm_spend_usd_today",
            "LLM spend of the current UTC day, USD: settled calls (spent) and calls in flight (reserved)",
            labels=["state"],
        )
        family.add_metric(["spent"], spent)
        family.add_metric(["reserved"], reserved)
        yield family


def llm_spend_function() -> Callable[[], Any] | None:
    """The llm connector's ``spend_today`` if it is installed (it is built separately)."""
    try:
        from automate.connectors import llm
    except ImportError:
        return None
    fn = getattr(llm, "spend_today", None)
    return fn if callable(fn) else None


def registry_for_scrape(*extra: Collector) -> CollectorRegistry:
    """The registry to expose: this process's (``REGISTRY``), or in multiprocess mode
    (``PROMETHEUS_MULTIPROC_DIR``) a fresh one aggregating every process's files; plus ``extra``
    collectors that read shared state at scrape time (they are not per process)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    for collector in extra:
        registry.register(collector)
    return registry


class _Forward(Collector):
    """Exposes another registry's metrics inside a per-scrape registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def describe(self) -> Iterator[Any]:
        return iter(())

    def collect(self) -> Iterator[Any]:
        return iter(self.source.collect())


_django_outbox: OutboxCollector | None = None


def render() -> bytes:
    """One scrape of the web process: its own metrics (or every process's, multiprocess mode), the outbox
    from the database, and the LLM spend when available."""
    global _django_outbox
    if _django_outbox is None:
        _django_outbox = OutboxCollector(django_outbox_fetch())
    extra: list[Collector] = [_django_outbox]
    spend = llm_spend_function()
    if spend is not None:
        extra.append(LlmSpendCollector(spend))
    return generate_latest(registry_for_scrape(*extra))

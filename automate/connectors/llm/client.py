"""The LLM connector's HTTP client: one ``httpx.AsyncClient`` per event loop, created on first use.

This is the one place that makes it: to route the LLM's calls through another client (the SSRF-guarded
shared client of the ``http`` connector, say), replace :func:`get_client`. The base URL is an operator
setting, not a workflow author's input, so it is not put through the SSRF guard; only http(s) is allowed
(checked by the connector).

httpx logs every request's URL at INFO (logger ``httpx``): :func:`scrub_logs` adds the values it is given
(a base URL that came from a secret) to a filter on that logger, which redacts them from its records.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref

import httpx

from automate.core.redaction import Redactor, default_redactor

__all__ = ["aclose_clients", "get_client", "scrub_logs"]

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


def get_client() -> httpx.AsyncClient:
    """The running loop's client (connections are per loop: a client must not be shared across loops)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        # Redirects are not followed: an API endpoint that redirects is misconfigured, and a redirect would
        # carry the Authorization header to wherever it points.
        client = httpx.AsyncClient(follow_redirects=False, limits=_LIMITS, trust_env=False)
        _clients[loop] = client
    return client


async def aclose_clients() -> None:
    """Close the running loop's client (the worker calls this at shutdown); the next use makes a new one."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


class _ScrubFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._values: set[str] = set()
        self._redactor: Redactor = default_redactor
        self._lock = threading.Lock()

    def add(self, values: set[str]) -> None:
        with self._lock:
            if values <= self._values:
                return
            self._values |= values
            self._redactor = default_redactor.with_secrets(self._values)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._values:
            record.msg = self._redactor.redact_str(record.getMessage())
            record.args = None
        return True


_filter = _ScrubFilter()
logging.getLogger("httpx").addFilter(_filter)


def scrub_logs(*values: str) -> None:
    """Redact these values from httpx's log records from now on."""
    _filter.add({v for v in values if v})

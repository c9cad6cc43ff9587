"""Outbound HTTP: the ``http`` and ``slack`` step types and the SSRF-guarded client they share.

Modules: ``guard`` (parse, resolve once, check every address; no network client), ``client`` (the
per-event-loop httpx client whose connections go only to checked addresses), ``fetch`` (one call:
redirects re-checked hop by hop, capped body, failures classified), ``http`` and ``slack`` (the
connectors). Importing this package is cheap: httpx is imported, and the client made, on first use.

The worker closes the shared client when it shuts down: ``await aclose_clients()`` on its event loop.
"""

from __future__ import annotations

import sys

from .http import HttpConnector
from .slack import SlackConnector

__all__ = ["HttpConnector", "SlackConnector", "aclose_clients"]


async def aclose_clients() -> None:
    """Close the running event loop's shared HTTP client, if one was made (idempotent)."""
    client = sys.modules.get(f"{__name__}.client")
    if client is not None:
        await client.aclose_all()

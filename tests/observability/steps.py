"""Steps for the observability tests (allowlisted in tests/observability/server_settings.py)."""

from __future__ import annotations

from typing import Any

import httpx
from opentelemetry.propagate import inject


async def call_downstream(url: str, **_: Any) -> dict[str, Any]:
    """POST to ``url`` with the current trace context in the headers, as the http connector does.

    Stands in for the ``http`` connector, which is built separately (automate/connectors/http/): it
    injects ``traceparent`` from the current (step) span the same way."""
    headers: dict[str, str] = {}
    inject(headers)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(url, json={"hello": "downstream"}, headers=headers)
    response.raise_for_status()
    return {"status": response.status_code}


def boom(message: str = "nope") -> None:
    raise ValueError(message)

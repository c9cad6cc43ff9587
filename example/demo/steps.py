"""Callables the demo workflow's python steps call (allowlisted in project/settings.py)."""

from __future__ import annotations

import asyncio
from typing import Any


async def score_order(total: float, ctx: Any) -> dict[str, Any]:
    await asyncio.sleep(0.01)  # pretend to ask a scoring service
    return {"tier": "gold" if total >= 100 else "standard", "idempotency_key": ctx.idempotency_key}


def reserve_stock(order_id: int) -> dict[str, Any]:
    return {"reserved": True, "order_id": order_id}

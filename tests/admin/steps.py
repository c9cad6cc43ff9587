"""Step callables of the admin tests (allowlisted as ``tests.admin.steps.*`` by the fixtures)."""

from __future__ import annotations

import threading
from typing import Any

GATE = threading.Event()
ENTERED = threading.Event()


def untrusted(**_: Any) -> dict[str, Any]:
    """An output an attacker controls: markup, and a key that looks like a credential."""
    return {"html": "<script>alert('x')</script><b>bold</b>", "api_key": "sk-test-0123456789abcdefghij"}


def gate(**_: Any) -> str:
    """Blocks until the test opens GATE (the run is then in flight, at a known step)."""
    ENTERED.set()
    if not GATE.wait(30):
        raise TimeoutError("the test never opened the gate")
    return "through"

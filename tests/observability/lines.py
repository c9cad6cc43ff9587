"""Reading what a worker wrote: its ECS JSON lines (LOGGING_SCHEMA "ecs", the default)."""

from __future__ import annotations

import json
from typing import Any


def ecs_records(output: str) -> list[dict[str, Any]]:
    """Every line of ``output`` that is an ECS JSON object (others, such as tracebacks printed by Python
    itself before logging is configured, are skipped)."""
    records = []
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "@timestamp" in record:
                records.append(record)
    return records


def log_messages(output: str) -> str:
    """The messages of the ECS lines, one a line, followed by any line that was not JSON: what the
    worker would have printed as plain text."""
    plain = [line for line in output.splitlines() if not line.startswith("{")]
    return "\n".join([r.get("message", "") for r in ecs_records(output)] + plain)

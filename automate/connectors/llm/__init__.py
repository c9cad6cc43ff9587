"""The ``llm`` step type (OpenAI-compatible chat completions) and its daily budget.

    {"id": "summary", "type": "llm", "config": {
        "model": "gpt-4o-mini", "max_tokens": 300, "temperature": 0,
        "messages": [{"role": "user", "content": "Summarise: {{ event.payload.text }}"}]}}

See :mod:`.connector` (the call), :mod:`.budget` (``POLICY.llm_budget_daily``), :mod:`.cost` (the
bound) and :mod:`.client` (the HTTP client, one place to swap).
"""

from .budget import BudgetExceeded, release_stale, spend_today
from .connector import LlmConnector

__all__ = ["BudgetExceeded", "LlmConnector", "release_stale", "spend_today"]

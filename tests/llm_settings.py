"""Settings of the worker subprocesses of tests/aio/test_llm_budget_workers.py (and the in-process ``llm``
tests): tests.settings, plus the ``llm`` connector pointed at the fake server through two secrets read
from the environment ($AUTOMATE_LLM_TEST_URL, $AUTOMATE_LLM_TEST_KEY), and a daily budget that fits
exactly ten calls: a call's bound is max_tokens 1000 x 0.001 USD per 1k = 0.001 USD (input tokens are
free here, so the bound is also the actual cost the fake server's usage gives), and 10 x 0.001 <= 0.0105
< 11 x 0.001.
"""

from tests.settings import *  # noqa: F403
from tests.settings import DJANGO_AUTOMATE as _BASE

LLM_MODEL = "fake-mini"
LLM_MAX_TOKENS = 1000
LLM_BUDGET = 0.0105
LLM = {
    "base_url": "$secret:LLM_TEST_URL",
    "api_key": "$secret:LLM_TEST_KEY",
    "prices": {LLM_MODEL: {"input_per_1k": 0.0, "output_per_1k": 0.001}},
    "timeout_seconds": 30,
}

DJANGO_AUTOMATE = {
    **_BASE,
    "POLICY": {**_BASE.get("POLICY", {}), "llm_budget_daily": LLM_BUDGET},
    "LLM": LLM,
}

"""Settings of the worker subprocesses of the fault-injection test (tests/aio/test_chaos.py).

tests.settings, plus: a secret backend that fails at random, and retry waits over one second parked in the
database (so the test's parked retries stay short).
"""

from tests.settings import *  # noqa: F403
from tests.settings import DJANGO_AUTOMATE as _BASE

DJANGO_AUTOMATE = {
    **_BASE,
    "EXECUTION": {"park_after_seconds": 1.0},
    "SECRETS": {"backend": "tests.chaos_steps.ChaosSecrets"},
}

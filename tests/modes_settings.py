"""tests.settings with the WORKER_MODE of ``$AUTOMATE_TEST_WORKER_MODE`` (tests/test_worker_modes.py)."""

import os

from tests.settings import *  # noqa: F403
from tests.settings import DJANGO_AUTOMATE as _BASE

DJANGO_AUTOMATE = {
    **_BASE,
    "WORKER_MODE": os.environ.get("AUTOMATE_TEST_WORKER_MODE", "thread"),
    "POLICY": {"python_allowlist": ["tests.steps.*", "tests.mode_steps.*"]},
    "EXECUTION": {"sync_threads": 2},
}
TASKS = {"default": {"BACKEND": "automate.tasks.AutomateTaskBackend"}}

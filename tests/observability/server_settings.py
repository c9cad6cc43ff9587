"""Settings of the processes the observability tests start (uvicorn, workers): tests.settings with
METRICS_EXPORT on, a metrics token, and 127.0.0.1 allowed for the http connector. The database is the test
database (AUTOMATE_TEST_WORKER_DATABASE_URL, see tests.settings)."""

from tests.settings import *  # noqa: F403
from tests.settings import DJANGO_AUTOMATE as _BASE

ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "tests.observability.urls"
DJANGO_AUTOMATE = {
    **_BASE,
    "METRICS_EXPORT": True,
    "METRICS_TOKEN": "metrics-test-token",
    "EXECUTION": {"max_retries": 2},
    "POLICY": {
        **_BASE["POLICY"],
        "ssrf_allowlist": ["127.0.0.1"],  # the trace test's downstream service
    },
}

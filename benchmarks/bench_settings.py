"""Django settings for the benchmarks: the automate app only, on the database in ``$BENCH_DB_URL``.

The benchmark scripts create a fresh database per run and pass its URL to every child process through
``BENCH_DB_URL`` (see ``_common.child_env``); this module never starts a server itself.
``BENCH_AUTOMATE_SETTINGS`` (JSON) becomes ``DJANGO_AUTOMATE`` when set.
"""

import json
import os

from django.core.exceptions import ImproperlyConfigured

from automate.embedded import django_database

try:
    BENCH_DB_URL = os.environ["BENCH_DB_URL"]
except KeyError:
    raise ImproperlyConfigured(
        "BENCH_DB_URL is not set: the benchmark scripts set it to the fresh database they created"
    ) from None

SECRET_KEY = "benchmarks-only-not-secret"
DEBUG = False  # DEBUG=True would keep every query in memory
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["automate"]
DATABASES = {"default": django_database(BENCH_DB_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# A benchmark may add runtime settings for its child processes (bench_peers allowlists its step function).
DJANGO_AUTOMATE: dict = json.loads(os.environ.get("BENCH_AUTOMATE_SETTINGS") or "{}")

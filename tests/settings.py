"""Test settings: a real PostgreSQL, ``AUTOMATE_TEST_DATABASE_URL`` or the embedded server."""

import os

from automate.embedded import django_database, embedded_url

# Worker subprocesses started by the tests connect straight to the test database.
WORKER_DATABASE_URL = os.environ.get("AUTOMATE_TEST_WORKER_DATABASE_URL")
TEST_DATABASE_URL = (
    WORKER_DATABASE_URL or os.environ.get("AUTOMATE_TEST_DATABASE_URL") or embedded_url(quiet=True)
)

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "automate",
    "tests.testapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {"default": django_database(TEST_DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DJANGO_AUTOMATE: dict = {"POLICY": {"python_allowlist": ["tests.steps.*", "tests.chaos_steps.*"]}}

"""Settings used when the worker starts with no DJANGO_SETTINGS_MODULE: DATABASE_URL or embedded."""

from automate.embedded import database_url, django_database

SECRET_KEY = "automate-worker-default"  # noqa: S105 - the worker serves no requests
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "automate"]
USE_TZ = True
DATABASES = {"default": django_database(database_url())}
DJANGO_AUTOMATE: dict = {}

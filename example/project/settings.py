"""A runnable Django project that uses django-automate. Database: DATABASE_URL, else embedded."""

from automate.embedded import database_url, django_database

SECRET_KEY = "example-only-change-me"  # noqa: S105 - a demo project
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.admin",
    "automate",
    "demo",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "project.urls"
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
STATIC_URL = "static/"
DATABASES = {"default": django_database(database_url())}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DJANGO_AUTOMATE = {
    "EXECUTION": {"timeout_seconds": 30, "max_retries": 3, "batch_size": 50},
    "POLICY": {"connector_allowlist": ["python", "transform"], "python_allowlist": ["demo.steps.*"]},
    # POST automate/webhooks/shop/, signed with $AUTOMATE_SHOP_WEBHOOK (the env secrets backend).
    "WEBHOOKS": {"sources": {"shop": {"secret": "$secret:SHOP_WEBHOOK", "event_type": "shop.webhook"}}},
}

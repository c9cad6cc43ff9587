from django.apps import AppConfig


class AutomateConfig(AppConfig):
    name = "automate"
    verbose_name = "Automate"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system check)
        from .observability.logs import configure_django_logging
        from .observability.tracing import configure_tracing

        # Tracing: only when OTEL_* variables ask for it and no provider is installed yet (yours, or
        # opentelemetry-instrument's, wins). A variable asking for the impossible stops start-up here.
        configure_tracing("django-automate")
        # Logging: the "automate" logger in LOGGING_SCHEMA, unless settings.LOGGING configures it.
        configure_django_logging()

from django.apps import AppConfig


class AutomateConfig(AppConfig):
    name = "automate"
    verbose_name = "Automate"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system check)

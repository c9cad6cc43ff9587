from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "demo"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from automate import model_events

        from .models import Order

        # demo.order.created / .updated / .deleted, written in the same transaction as the change.
        model_events.register(Order, fields=["id", "total", "status"])

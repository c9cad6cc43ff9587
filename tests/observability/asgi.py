"""The Django project served by uvicorn in the trace test, instrumented as an operator would: the ASGI
app wrapped in OpenTelemetry's ASGI middleware (SERVER spans continuing the caller's ``traceparent``)."""

from django.core.asgi import get_asgi_application
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

django_app = get_asgi_application()  # django.setup(): AutomateConfig.ready configures tracing from OTEL_*
application = OpenTelemetryMiddleware(django_app)

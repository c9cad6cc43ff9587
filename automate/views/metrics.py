"""``GET /metrics`` for Prometheus (``METRICS_EXPORT``): staff users, or ``Authorization: Bearer <token>``
with ``METRICS_TOKEN`` (a literal or a ``$secret:NAME`` reference).

404 while ``METRICS_EXPORT`` is false (the endpoint does not exist), 401 without credentials, 403 with
wrong ones (a wrong token, or a signed-in user who is not staff).
"""

from __future__ import annotations

import hmac

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from automate.conf import get_settings

__all__ = ["metrics_view"]


def _token() -> str:
    configured = get_settings().METRICS_TOKEN
    if not configured:
        return ""
    from automate.secrets import is_secret_ref, resolve

    return resolve(configured) if is_secret_ref(configured) else configured


def _denied(request: HttpRequest) -> HttpResponse | None:
    """None when the request may read the metrics, else the 401/403 response."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, given = header.partition(" ")
        expected = _token()
        if scheme.lower() == "bearer" and expected and hmac.compare_digest(given.strip().encode(), expected.encode()):
            return None
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        if user.is_active and user.is_staff:
            return None
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    response = HttpResponse("authentication required\n", status=401, content_type="text/plain")
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not get_settings().METRICS_EXPORT:
        raise Http404("DJANGO_AUTOMATE.METRICS_EXPORT is False")
    denied = _denied(request)
    if denied is not None:
        return denied
    from automate.observability.metrics import render

    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)

"""``POST <prefix>/webhooks/<source>/``: a signed delivery becomes an event.

Checks, in order, each refusal audited as ``webhook.rejected`` (details: source, reason, remote address;
never the signature, the body or the secret) and storing no event:

=====================================================  ======
unknown source (not in ``WEBHOOKS.sources``)            404
body larger than ``WEBHOOKS.max_body_bytes``            413
missing, malformed or wrong signature                   401
timestamp outside ``WEBHOOKS.replay_window_seconds``    401
missing or malformed delivery id                        400
body not a JSON object, or refused by ``emit_event``    400
delivery id already seen                                400 ``duplicate delivery``
the source's secret cannot be resolved                  503
=====================================================  ======

An accepted delivery is answered ``202 {"event_id": "<uuid>"}``: the event has type
``WEBHOOKS.sources[<source>].event_type``, source ``<source>`` and the JSON body as payload. The view is
async; the secret is resolved with ``aresolve`` and every database write runs through ``sync_to_async``.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from automate import audit, queries
from automate.conf import WebhookSource, get_settings
from automate.core.errors import AutomateError
from automate.runtime import InvalidEventError, emit_event
from automate.secrets import aresolve

from .signing import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, verify

__all__ = ["receive"]

log = logging.getLogger(__name__)

ACTOR = "webhook"
_MAX_SOURCE_CHARS = 100


def dedupe_key(source: str, delivery_id: str) -> str:
    return f"webhook:{source}:{delivery_id}"


def _remote_addr(request: HttpRequest) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is whatever the sender wrote.
    return str(request.META.get("REMOTE_ADDR") or "")[:100]


async def _refuse(request: HttpRequest, source: str, status: int, reason: str, **extra: Any) -> JsonResponse:
    source = source[:_MAX_SOURCE_CHARS]
    details = {"source": source, "reason": reason, "remote_addr": _remote_addr(request)}
    await audit.arecord(ACTOR, "webhook.rejected", f"webhook:{source}", details)
    log.info("automate.webhook.rejected", extra={"source": source, "reason": reason, "status": status})
    return JsonResponse({"error": reason, **extra}, status=status)


def _store(source: str, config: WebhookSource, delivery_id: str, payload: dict[str, Any]) -> tuple[str, bool]:
    """Emit the event unless the delivery was seen: ``(event id, stored?)``, in one transaction.

    A transaction-scoped advisory lock on the dedupe key makes two concurrent copies of one delivery
    queue: the second sees the first's committed event and is refused, instead of being answered with
    the first one's id as if it had been stored.
    """
    key = dedupe_key(source, delivery_id)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(queries.WEBHOOK_DELIVERY_LOCK, {"key": key})
        cursor.execute(queries.EVENT_ID_BY_DEDUPE_KEY, {"dedupe_key": key})
        row = cursor.fetchone()
        if row is not None:
            return str(row[0]), False
        return emit_event(config.event_type, payload, dedupe_key=key, source=source), True


@csrf_exempt
@require_POST
async def receive(request: HttpRequest, source: str) -> JsonResponse:
    settings = get_settings().WEBHOOKS
    config = settings.sources.get(source)
    if config is None:
        return await _refuse(request, source, 404, "unknown source")
    limit = settings.max_body_bytes
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        return await _refuse(request, source, 413, "body too large")
    # A bounded read, not request.body: a chunked body has no Content-Length, and request.body would
    # apply Django's DATA_UPLOAD_MAX_MEMORY_SIZE instead of WEBHOOKS.max_body_bytes.
    body = request.read(limit + 1)
    if len(body) > limit:
        return await _refuse(request, source, 413, "body too large")
    try:
        secret = await aresolve(config.secret)
    except (AutomateError, ConnectionError, LookupError, ValueError) as exc:
        log.error("automate.webhook.secret_unavailable", extra={"source": source, "error": type(exc).__name__})
        return await _refuse(request, source, 503, "signing secret unavailable")
    delivery_id = request.headers.get(DELIVERY_HEADER)
    try:
        verify(
            body,
            secret,
            timestamp=request.headers.get(TIMESTAMP_HEADER),
            signature_header=request.headers.get(SIGNATURE_HEADER),
            delivery_id=delivery_id,
            replay_window_seconds=settings.replay_window_seconds,
        )
    except SignatureError as exc:
        return await _refuse(request, source, exc.status, exc.reason)
    assert delivery_id is not None  # verify() refused a missing one
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return await _refuse(request, source, 400, "body is not JSON")
    if not isinstance(payload, dict):
        return await _refuse(request, source, 400, "body is not a JSON object")
    try:
        event_id, stored = await sync_to_async(_store)(source, config, delivery_id, payload)
    except InvalidEventError as exc:  # names the path and the limit, never a value
        return await _refuse(request, source, 400, f"invalid payload: {exc}"[:300])
    if not stored:
        return await _refuse(request, source, 400, "duplicate delivery", event_id=event_id)
    return JsonResponse({"event_id": event_id}, status=202)

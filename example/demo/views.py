"""Emitting from views: a sync view (``emit_event``), an async one (``aemit_event``), and an async view
that ties an event to its own write (one sync function under ``transaction.atomic``, run with
``sync_to_async``). All take a JSON object; ``{"fail": true}`` makes the transaction roll back."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from automate.runtime import InvalidEventError, aemit_event, emit_event

from .models import Order


class Rejected(Exception):
    """Raised inside the transaction to roll it back."""


def _body(request: HttpRequest) -> dict[str, Any] | None:
    try:
        data = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _bad(message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=400)


@csrf_exempt
@require_POST
def emit_sync(request: HttpRequest) -> JsonResponse:
    """A sync view. Without ATOMIC_REQUESTS each statement autocommits, so the event would be committed
    even if the view failed afterwards; the atomic block (what ATOMIC_REQUESTS does for a whole view)
    makes the event part of the view's transaction."""
    payload = _body(request)
    if payload is None:
        return _bad("the body must be a JSON object")
    try:
        with transaction.atomic():
            event_id = emit_event("demo.ping", payload, source="example.sync")
            if payload.get("fail"):
                raise Rejected
    except Rejected:
        return JsonResponse({"error": "rolled back"}, status=422)
    except InvalidEventError as exc:
        return _bad(str(exc))
    return JsonResponse({"event_id": event_id}, status=202)


@csrf_exempt
@require_POST
async def emit_async(request: HttpRequest) -> JsonResponse:
    """An async view. aemit_event runs emit_event in a thread with its own connection, in autocommit:
    there is no ``async with transaction.atomic()``, so the event commits on its own."""
    payload = _body(request)
    if payload is None:
        return _bad("the body must be a JSON object")
    try:
        event_id = await aemit_event("demo.ping", payload, source="example.async")
    except InvalidEventError as exc:
        return _bad(str(exc))
    return JsonResponse({"event_id": event_id}, status=202)


def create_order(total: Decimal, fail: bool) -> tuple[int, str]:
    """The write and its event in one transaction: both commit, or neither."""
    with transaction.atomic():
        order = Order.objects.create(total=total)  # also emits demo.order.created (model events)
        event_id = emit_event("order.created", {"order": {"id": order.pk, "total": float(total)}}, source="example")
        if fail:
            raise Rejected
    return order.pk, event_id


@csrf_exempt
@require_POST
async def place_order(request: HttpRequest) -> JsonResponse:
    """An async view that ties the event to its own write: the sync function above, via sync_to_async."""
    payload = _body(request)
    if payload is None:
        return _bad("the body must be a JSON object")
    try:
        total = Decimal(str(payload.get("total")))
    except InvalidOperation:
        return _bad("total must be a number")
    if not total.is_finite() or not Decimal(0) <= total < Decimal(10) ** 8:
        return _bad("total must be between 0 and 99999999.99")
    try:
        order_id, event_id = await sync_to_async(create_order)(total, bool(payload.get("fail")))
    except Rejected:
        return JsonResponse({"error": "rolled back"}, status=422)
    return JsonResponse({"order_id": order_id, "event_id": event_id}, status=201)

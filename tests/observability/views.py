"""A minimal async view that emits an event, as an application's view would."""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from automate.runtime import aemit_event


@csrf_exempt
async def place_order(request: HttpRequest) -> JsonResponse:
    order = json.loads(request.body or b"{}")
    event_id = await aemit_event("order.placed", {"order": order})
    return JsonResponse({"event_id": event_id}, status=201)

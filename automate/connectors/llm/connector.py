"""The ``llm`` step type: one chat completion from an OpenAI-compatible ``/chat/completions`` endpoint,
under the daily budget (``POLICY.llm_budget_daily``, see :mod:`.budget`).

Each call: render and check the config; look up the model's price (``LLM.prices``); compute an upper
bound of the cost (:mod:`.cost`); reserve it (or fail with ``BudgetExceeded``, audited as
``policy.budget_denied``); POST; settle the reservation to the cost of the response's ``usage`` (the
whole bound when a response has none), or release it when the call failed without a billed response.

Output: ``{"content": "...", "usage": {"prompt_tokens": n, "completion_tokens": n}, "cost_usd": x,
"model": "..."}``.

``LLM.base_url`` and ``LLM.api_key`` are resolved at each call (``$secret:`` references through the
secret backend). Their values never reach an error, an audit entry or a log line: errors are built here,
never from an httpx exception (whose text can carry the URL), and are redacted with both values.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Mapping
from decimal import Decimal
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import httpx
import orjson
from opentelemetry import propagate

from automate.conf import get_settings
from automate.core.backoff import retry_after_seconds
from automate.core.errors import RetryLater, SecretNotFound, SpecError
from automate.core.redaction import Redactor

from ..base import PermanentStepError, StepContext, TransientStepError
from . import budget, client
from .config import config_problem, templated
from .cost import Price, prompt_token_bound

__all__ = ["LlmConnector", "no_price"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_DETAIL_STATUSES = frozenset({400, 404, 409, 413, 422})  # their error message helps; 401/403 can echo a key


def no_price(path: str, model: str, prices: Mapping[str, Any]) -> str:
    known = ", ".join(sorted(prices)[:20]) or "none"
    return (
        f"{path}: model {model[:200]!r} has no price in DJANGO_AUTOMATE.LLM.prices (priced: {known}); "
        f"the daily budget cannot bound its cost"
    )


async def _shielded(aw: Awaitable[T]) -> T:
    """Await ``aw`` to the end even if the step is cancelled meanwhile (a budget write must not be lost)."""
    return await asyncio.shield(aw)


class _Endpoint:
    __slots__ = ("api_key", "redactor", "url")

    def __init__(self, url: str, api_key: str, redactor: Redactor) -> None:
        self.url, self.api_key, self.redactor = url, api_key, redactor


async def _setting(value: str, key: str) -> tuple[str, bool]:
    """The value of ``LLM.<key>`` (resolved if it is a ``$secret:`` reference), and whether it was one."""
    from automate.secrets import aresolve, is_secret_ref

    if not is_secret_ref(value):
        return value, False
    try:
        return await aresolve(value), True
    except SecretNotFound as exc:
        raise PermanentStepError(f"DJANGO_AUTOMATE.LLM.{key}: {exc}") from None


async def _endpoint(conf: Any) -> _Endpoint:
    from automate.secrets import get_redactor

    base_url, url_was_secret = await _setting(conf.base_url, "base_url")
    api_key, _ = await _setting(conf.api_key, "api_key")
    secrets = {v for v in (api_key, base_url if url_was_secret else "") if v}
    redactor = get_redactor().with_secrets(secrets)
    client.scrub_logs(*secrets)
    shown = "(from a secret)" if url_was_secret else repr(redactor.redact_str(base_url[:200]))
    try:
        parts = urlsplit(base_url)
        scheme, host = parts.scheme, parts.hostname
    except ValueError:
        scheme, host = "", None
    if scheme not in ("http", "https") or not host:
        raise PermanentStepError(f"DJANGO_AUTOMATE.LLM.base_url {shown} is not an http(s) URL with a host")
    return _Endpoint(base_url.rstrip("/") + "/chat/completions", api_key, redactor)


def _usage(data: Any) -> tuple[int, int] | None:
    usage = data.get("usage") if isinstance(data, Mapping) else None
    if not isinstance(usage, Mapping):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int) and _count(prompt) and _count(completion):
        return prompt, completion
    return None


def _count(n: Any) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0


def _json(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


def _failure(response: httpx.Response, data: Any, redactor: Redactor) -> Exception:
    status = response.status_code
    what = f"llm: the endpoint answered HTTP {status}"
    if status == 429:
        delay = retry_after_seconds(response.headers.get("retry-after"))
        hint = f" (Retry-After {delay:g}s)" if delay is not None else ""
        return RetryLater(delay, f"{what} (rate limited){hint}")
    if status >= 500:
        return TransientStepError(what)
    if 300 <= status < 400:
        return PermanentStepError(f"{what}, a redirect (not followed): check DJANGO_AUTOMATE.LLM.base_url")
    detail = ""
    error = data.get("error") if isinstance(data, Mapping) else None
    if status in _DETAIL_STATUSES and isinstance(error, Mapping) and isinstance(error.get("message"), str):
        detail = ": " + redactor.redact_str(error["message"][:300])
    if status in (401, 403):
        detail = ": check DJANGO_AUTOMATE.LLM.api_key"
    return PermanentStepError(f"{what}{detail}")


def _content(data: Any) -> str:
    choices = data.get("choices") if isinstance(data, Mapping) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, Mapping) else None
    if not isinstance(message, Mapping):
        raise PermanentStepError("llm: the endpoint's response has no choices[0].message")
    content = message.get("content")
    return content if isinstance(content, str) else ""  # null: a refusal or a tool call


class LlmConnector:
    """OpenAI-compatible chat completions under the daily budget (see the module docstring)."""

    code: ClassVar[str] = "llm"
    needs_network: ClassVar[bool] = True
    is_llm: ClassVar[bool] = True

    def validate_config(self, config: Mapping[str, Any], *, path: str) -> None:
        problem = config_problem(config, path)
        if problem:
            raise SpecError(f"{problem[0]}: {problem[1]}")
        model = config["model"]
        prices = get_settings().LLM.prices
        if not templated(model) and model not in prices:
            raise SpecError(no_price(f"{path}.model", model, prices))

    async def run(self, config: Mapping[str, Any], ctx: StepContext) -> Any:
        problem = config_problem(config, "config", rendered=True)
        if problem:
            raise PermanentStepError(f"{problem[0]}: {problem[1]}")
        settings = get_settings()
        conf = settings.LLM
        model: str = config["model"]
        if model not in conf.prices:  # a templated model: known only now, refused for good
            raise PermanentStepError(no_price("config.model", model, conf.prices))
        price = Price.of(conf.prices[model])
        max_tokens: int = config["max_tokens"]
        prompt_bound = prompt_token_bound(config["messages"])
        bound = price.cost(prompt_bound, max_tokens)
        endpoint = await _endpoint(conf)
        try:
            reservation = await _reserve(bound, _event_id(ctx))
        except budget.BudgetExceeded as exc:
            ctx.audit("policy.budget_denied", f"llm:{model}", {"model": model, **exc.details()})
            raise
        body = {key: config[key] for key in config if config[key] is not None}
        headers = {"content-type": "application/json", "accept": "application/json"}
        if endpoint.api_key:
            headers["authorization"] = f"Bearer {endpoint.api_key}"
        propagate.inject(headers)  # traceparent (and tracestate) of the current span, if any
        try:
            response = await _post(endpoint, body, headers, conf.timeout_seconds)
        except BaseException:
            await _release(reservation)
            raise
        data = _json(response)
        usage = _usage(data)
        actual = price.cost(*usage) if usage else bound
        if not response.is_success:
            await (_settle(reservation, actual, model) if usage else _release(reservation))
            raise _failure(response, data, endpoint.redactor)
        await _settle(reservation, actual, model)
        if usage is None:
            log.warning("automate.llm.usage_missing", extra={"run_id": ctx.run_id, "step": ctx.step_id,
                                                             "model": model, "charged_usd": str(bound)})
        output: dict[str, Any] = {
            "content": _content(data),
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]} if usage
            else {"prompt_tokens": prompt_bound, "completion_tokens": max_tokens},
            "cost_usd": float(actual),
            "model": data["model"] if isinstance(data.get("model"), str) else model,
        }
        if usage is None:
            output["usage_estimated"] = True  # the response had no usage: charged (and shown) as the bound
        return output


def _event_id(ctx: StepContext) -> str | None:
    event_id = ctx.event.get("id") if isinstance(ctx.event, Mapping) else None
    return str(event_id) if event_id else None


async def _post(endpoint: _Endpoint, body: dict[str, Any], headers: dict[str, str], limit_s: float) -> httpx.Response:
    """The POST; a transport failure becomes an error built here (an httpx message can carry the URL)."""
    try:
        return await client.get_client().post(
            endpoint.url, content=orjson.dumps(body), headers=headers, timeout=limit_s
        )
    except httpx.TimeoutException as exc:
        raise TransientStepError(
            f"llm: the endpoint did not answer within {limit_s:g}s ({type(exc).__name__})"
        ) from None
    except httpx.TransportError as exc:
        raise TransientStepError(f"llm: could not reach the endpoint ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise PermanentStepError(f"llm: the request failed ({type(exc).__name__})") from None


async def _reserve(bound: Decimal, event_id: str | None) -> budget.Reservation:
    """Reserve ``bound``; if the step is cancelled meanwhile, the reservation (made in its thread anyway)
    is given back before the cancellation goes on."""
    task = asyncio.ensure_future(budget.areserve(bound, event_id=event_id))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):  # refused or failed: nothing to give back
            await _release(await task)
        raise


async def _settle(reservation: budget.Reservation, actual: Decimal, model: str) -> None:
    try:
        held = await _shielded(budget.asettle(reservation, actual))
    except Exception as exc:  # the call is done (and billed): never fail it, or a retry would pay twice
        log.warning("automate.llm.settle_failed", extra={"model": model, "error": type(exc).__name__})
        return
    if actual > reservation.amount:
        log.warning("automate.llm.cost_over_bound", extra={
            "model": model, "bound_usd": str(reservation.amount), "cost_usd": str(actual)})
    if not held:
        log.warning("automate.llm.reservation_swept", extra={"model": model, "reservation": reservation.id})


async def _release(reservation: budget.Reservation) -> None:
    try:
        await _shielded(budget.arelease(reservation))
    except Exception as exc:  # the sweep releases it once the job has ended
        log.warning("automate.llm.release_failed", extra={"reservation": reservation.id,
                                                          "error": type(exc).__name__})

"""The ``http`` step type: one HTTP request through the SSRF guard.

    {"type": "http", "config": {
        "method": "POST", "url": "https://api.example.com/v1/orders",
        "headers": {"Authorization": "Bearer $secret:API_TOKEN"}, "params": {"dry_run": "false"},
        "json": {"id": "{{ event.payload.id }}"},        # or "body": "raw text" (not both)
        "timeout_seconds": 10}}

Output: ``{"status": 201, "headers": {...}, "json": ...}`` when the response says it is JSON
(``application/json`` or ``+json``) and parses, else ``{"status": ..., "headers": ..., "text": "..."}``.
The request carries ``Idempotency-Key: <run id>:<step id>`` (stable across retries), ``User-Agent``
(``HTTP.user_agent``) and, inside a traced step, ``traceparent``; headers the config sets win.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson
from opentelemetry import propagate, trace

from automate.core.errors import SpecError

from ..base import PermanentStepError, StepContext, reject_unknown_keys
from .guard import safe_location

__all__ = ["HttpConnector", "build_headers", "is_dynamic"]

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_KEYS = ("method", "url", "headers", "params", "json", "body", "timeout_seconds")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Set by the client from the request itself; a config that sets them could desynchronise the two.
_RESERVED = frozenset({"host", "content-length", "transfer-encoding", "connection", "te", "trailer", "upgrade"})
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_CHARSET = re.compile(r"charset=\"?([A-Za-z0-9._:-]{1,40})", re.IGNORECASE)
MAX_TIMEOUT = 3_600


def is_dynamic(value: Any) -> bool:
    """A value only known at run time: a template or a secret reference."""
    return isinstance(value, str) and ("{{" in value or "$secret:" in value)


def _header_problem(name: Any, value: Any) -> str | None:
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        return "is not a valid header name"
    if name.lower() in _RESERVED:
        return "is set by the client and cannot be configured"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return "must be a string"
    if isinstance(value, str) and _BAD_VALUE.search(value):
        return "contains a line break or NUL (header injection refused)"  # the value is never quoted
    return None


def _timeout_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "must be a number of seconds"
    if not 0 < value <= MAX_TIMEOUT:
        return f"must be more than 0 and at most {MAX_TIMEOUT}"
    return None


def _params_problem(params: Any) -> str | None:
    if not isinstance(params, Mapping):
        return "must be an object of query parameters"
    for key, value in params.items():
        values = value if isinstance(value, list) else [value]
        if not all(v is None or isinstance(v, str | int | float | bool) for v in values):
            return f"{key}: must be a string, number, boolean, null or a list of them"
    return None


def build_headers(configured: Any, ctx: StepContext, user_agent: str, where: str) -> list[tuple[str, str]]:
    """The request's headers: the configured ones (checked), then the defaults they do not override."""
    if configured is None:
        configured = {}
    if not isinstance(configured, Mapping):
        raise PermanentStepError(f"{where}: config.headers must be an object")
    headers: list[tuple[str, str]] = []
    for name, value in configured.items():
        problem = _header_problem(name, value)
        if problem:
            shown = repr(name) if isinstance(name, str) and len(name) <= 64 else "a header name"
            raise PermanentStepError(f"{where}: config.headers {shown} {problem}")
        headers.append((name, value if isinstance(value, str) else str(value)))
    present = {name.lower() for name, _ in headers}
    defaults = {"User-Agent": user_agent, "Idempotency-Key": ctx.idempotency_key}
    carrier: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        propagate.inject(carrier)
    for name, value in (*defaults.items(), *carrier.items()):
        if name.lower() not in present:
            headers.append((name, value))
    return headers


def _content_type(headers: list[tuple[str, str]]) -> str | None:
    return next((v for k, v in headers if k.lower() == "content-type"), None)


def _decode(reply: Any) -> dict[str, Any]:
    headers: dict[str, str] = {}
    for name, value in reply.headers.multi_items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    output: dict[str, Any] = {"status": reply.status, "headers": headers}
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        try:
            output["json"] = orjson.loads(reply.body)
            return output
        except orjson.JSONDecodeError:
            pass  # says JSON, is not: kept as text
    found = _CHARSET.search(headers.get("content-type", ""))
    charset = found.group(1) if found else "utf-8"
    try:
        text = reply.body.decode(charset, errors="replace")
    except LookupError:
        text = reply.body.decode("utf-8", errors="replace")
    output["text"] = text.replace("\x00", "\ufffd")  # PostgreSQL text holds no NUL
    return output


def _run_timeout(value: Any, where: str) -> float | None:
    """``config.timeout_seconds`` as rendered (a template may have made it a numeric string)."""
    if value is None:
        return None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if problem := _timeout_problem(value):
        raise PermanentStepError(f"{where}: config.timeout_seconds {problem}")
    return float(value)


def label(method: str, url: str) -> str:
    return f"{method} {safe_location(url)}"


class HttpConnector:
    """One HTTP request through the SSRF guard (see the module docstring)."""

    code: ClassVar[str] = "http"
    needs_network: ClassVar[bool] = True
    is_llm: ClassVar[bool] = False

    def validate_config(self, config: Mapping[str, Any], *, path: str) -> None:
        reject_unknown_keys(config, _KEYS, path=path)
        method = config.get("method", "GET")
        if not isinstance(method, str):
            raise SpecError(f"{path}.method: must be a string, one of {', '.join(METHODS)}")
        if not is_dynamic(method) and method.upper() not in METHODS:
            raise SpecError(f"{path}.method: {method[:20]!r} is not one of {', '.join(METHODS)}")
        if "url" not in config:
            raise SpecError(f"{path}.url: required (an absolute http:// or https:// URL)")
        url = config["url"]
        if not isinstance(url, str):
            raise SpecError(f"{path}.url: must be a string (an absolute http:// or https:// URL)")
        if not is_dynamic(url) and not re.match(r"https?://", url.strip(), re.IGNORECASE):
            raise SpecError(f"{path}.url: only absolute http:// and https:// URLs are allowed")
        headers = config.get("headers", {})
        if not is_dynamic(headers):
            if not isinstance(headers, Mapping):
                raise SpecError(f"{path}.headers: must be an object of header names to values")
            for name, value in headers.items():
                problem = None if is_dynamic(value) and isinstance(name, str) else _header_problem(name, value)
                if problem:
                    raise SpecError(f"{path}.headers.{str(name)[:64]}: {problem}")
        params = config.get("params", {})
        if not is_dynamic(params) and (problem := _params_problem(params)):
            raise SpecError(f"{path}.params: {problem}")
        if "json" in config and "body" in config:
            raise SpecError(f"{path}.body: give either 'json' or 'body', not both")
        if "body" in config and not isinstance(config["body"], str):
            raise SpecError(f"{path}.body: must be a string (use 'json' to send a JSON value)")
        timeout = config.get("timeout_seconds")
        if timeout is not None and not is_dynamic(timeout) and (problem := _timeout_problem(timeout)):
            raise SpecError(f"{path}.timeout_seconds: {problem}")

    async def run(self, config: Mapping[str, Any], ctx: StepContext) -> Any:
        from automate.conf import get_settings

        from .fetch import fetch, raise_for_status  # httpx is imported on first use, not at registration

        method = config.get("method", "GET")
        url = config.get("url")
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise PermanentStepError(f"config.method: must be one of {', '.join(METHODS)}")
        method = method.upper()
        if not isinstance(url, str):
            raise PermanentStepError("config.url: must be a string (an absolute http:// or https:// URL)")
        where = label(method, url)
        settings = get_settings().HTTP
        headers = build_headers(config.get("headers"), ctx, settings.user_agent, where)
        params = config.get("params")
        if params is not None and (problem := _params_problem(params)):
            raise PermanentStepError(f"{where}: config.params {problem}")
        content: bytes | None = None
        if "json" in config and "body" in config:
            raise PermanentStepError(f"{where}: give either config.json or config.body, not both")
        if "json" in config:
            content = orjson.dumps(config["json"])
            if _content_type(headers) is None:
                headers.append(("Content-Type", "application/json"))
        elif "body" in config:
            body = config["body"]
            if not isinstance(body, str):
                raise PermanentStepError(f"{where}: config.body must be a string")
            content = body.encode("utf-8")
            if _content_type(headers) is None:
                headers.append(("Content-Type", "text/plain; charset=utf-8"))
        reply = await fetch(
            method, url, headers=headers, ctx=ctx, labeller=label, params=params, content=content,
            timeout_seconds=_run_timeout(config.get("timeout_seconds"), where),
        )
        raise_for_status(reply.status, reply.headers, reply.label)
        return _decode(reply)

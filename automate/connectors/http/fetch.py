"""One guarded call: check the URL, send it pinned, follow redirects (checking each hop), read a capped body.

Shared by the ``http`` and ``slack`` connectors. Every failure becomes a ``TransientStepError`` (timeouts,
connection errors, 5xx, 408), a ``RetryLater`` (429, with the server's ``Retry-After``) or a
``PermanentStepError`` (any other 4xx, a blocked address, too many redirects, a body over the cap, a
certificate that does not verify). Messages start with the caller's ``label`` (method, host and path, or
"slack webhook") and never quote a header value, a query string or userinfo.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httpx

from automate.conf import get_settings
from automate.core.backoff import retry_after_seconds
from automate.core.errors import AutomateError, RetryLater, UnsafeAddressError

from ..base import PermanentStepError, StepContext, TransientStepError
from .client import pinned, shared_client
from .guard import Target, check_target

__all__ = ["REDIRECTS", "Reply", "fetch", "raise_for_status"]

REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CREDENTIALS = frozenset({"authorization", "cookie", "proxy-authorization"})
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding", "transfer-encoding"})

Labeller = Callable[[str, str], str]  # (method, url) -> "GET host/path"


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes
    label: str  # of the hop that answered


def _phrase(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def raise_for_status(status: int, headers: Mapping[str, str], label: str, detail: str = "") -> None:
    """5xx and 408 are transient, 429 asks to retry after ``Retry-After``, any other 4xx is permanent."""
    if status == 429:
        delay = retry_after_seconds(headers.get("retry-after"))
        after = f" (Retry-After {delay:g}s)" if delay is not None else ""
        raise RetryLater(delay, f"{label}: {_phrase(status)}{after}{detail}")
    if status >= 500 or status == 408:
        raise TransientStepError(f"{label}: {_phrase(status)}{detail}")
    if status >= 400:
        raise PermanentStepError(f"{label}: {_phrase(status)}{detail}")


def _cert_problem(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return str(seen.verify_message or seen.reason or "not trusted")
        seen = seen.__cause__ or seen.__context__
    return None


def _failure(exc: Exception, label: str, target: Target) -> AutomateError:
    """An httpx exception as a step failure. Messages are quoted only for network errors (they name an
    errno or the server's reply); a protocol error raised for our own request may quote a header."""
    if isinstance(exc, UnsafeAddressError):
        return PermanentStepError(f"{label}: {exc}")
    if isinstance(exc, httpx.TimeoutException):
        return TransientStepError(f"{label}: timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError) and (problem := _cert_problem(exc)):
        return PermanentStepError(f"{label}: TLS certificate verification failed for {target.host}: {problem}")
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        return TransientStepError(f"{label}: {type(exc).__name__}: {str(exc)[:200] or 'no detail'}")
    if isinstance(exc, httpx.DecodingError):
        return PermanentStepError(f"{label}: the response body could not be decoded (its Content-Encoding)")
    return PermanentStepError(f"{label}: {type(exc).__name__}")


async def _read(response: httpx.Response, cap: int, label: str) -> bytes:
    too_big = PermanentStepError(
        f"{label}: the response body is larger than DJANGO_AUTOMATE.HTTP.max_response_bytes ({cap} bytes)"
    )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise too_big
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():  # decoded: a compressed bomb stops at the cap too
        total += len(chunk)
        if total > cap:
            raise too_big  # stop reading: the connection is closed, not drained
        chunks.append(chunk)
    return b"".join(chunks)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


async def _send_checked(
    client: httpx.AsyncClient, request: httpx.Request, target: Target, label: str
) -> httpx.Response:
    host = request.url.raw_host.decode("ascii").lower()
    port = request.url.port or (443 if request.url.scheme == "https" else 80)
    if (host, port) != (target.host, target.port):  # httpx read the URL differently from the guard
        raise PermanentStepError(f"{label}: the URL's host is ambiguous (read as {host!r} and {target.host!r})")
    try:
        with pinned(target):
            return await client.send(request, stream=True)
    except (httpx.HTTPError, UnsafeAddressError) as exc:
        raise _failure(exc, label, target) from None


async def _follow(
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    params: Any,
    content: bytes | None,
    limit_s: float,
    ctx: StepContext,
    labeller: Labeller,
) -> Reply:
    settings = get_settings().HTTP
    client = shared_client()
    hops = 0
    while True:
        label = labeller(method, url)
        target = await check_target(url, ctx, label)
        request_url = httpx.URL(target.parsed.url)
        if params:
            request_url = request_url.copy_merge_params(params)
        request = client.build_request(method, request_url, headers=headers, content=content, timeout=limit_s)
        response = await _send_checked(client, request, target, label)
        try:
            location = response.headers.get("location")
            if response.status_code in REDIRECTS and location is not None:
                hops += 1
                if hops > settings.max_redirects:
                    raise PermanentStepError(
                        f"{label}: more than DJANGO_AUTOMATE.HTTP.max_redirects ({settings.max_redirects}) redirects"
                    )
                try:
                    following = request.url.join(location)
                except httpx.InvalidURL:
                    phrase = _phrase(response.status_code)
                    raise PermanentStepError(f"{label}: {phrase} to an invalid Location") from None
                if _origin(following) != _origin(request.url):  # credentials stay with their origin
                    headers = [(k, v) for k, v in headers if k.lower() not in _CREDENTIALS]
                status = response.status_code
                if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
                    method, content = "GET", None
                    headers = [(k, v) for k, v in headers if k.lower() not in _BODY_HEADERS]
                url, params = str(following), None
                continue
            try:
                body = await _read(response, settings.max_response_bytes, label)
            except httpx.HTTPError as exc:
                raise _failure(exc, label, target) from None
            return Reply(response.status_code, response.headers, body, label)
        finally:
            await response.aclose()


async def fetch(
    method: str,
    url: str,
    *,
    headers: list[tuple[str, str]],
    ctx: StepContext,
    labeller: Labeller,
    params: Any = None,
    content: bytes | None = None,
    timeout_seconds: float | None = None,
) -> Reply:
    """Send ``method url`` through the guard; the final reply of the redirect chain, body read.

    ``timeout_seconds`` (default ``HTTP.timeout_seconds``) is a deadline for the whole call: DNS, connects,
    redirects and the body. Statuses are not judged here: see :func:`raise_for_status`.
    """
    limit = timeout_seconds if timeout_seconds is not None else get_settings().HTTP.timeout_seconds
    try:
        async with asyncio.timeout(limit):
            return await _follow(method, url, headers, params, content, limit, ctx, labeller)
    except TimeoutError:
        raise TransientStepError(f"{labeller(method, url)}: no complete response within {limit:g}s") from None

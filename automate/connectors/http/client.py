"""The shared, guarded httpx client: one per event loop, connecting only to addresses the guard checked.

How the pinning works. httpx's transport hands connections to an httpcore pool; the pool asks its
network backend to ``connect_tcp(host, port)``. :class:`PinnedBackend` is that backend: it ignores DNS and
connects to the addresses of the :class:`~.guard.Target` the caller checked, which :func:`pinned` puts in a
context variable for the duration of the request (httpcore connects in the requesting task, so the
variable is visible there). A connect with no pinned target, or for another host or port, is refused. TLS
is then started by httpcore with ``server_hostname`` = the URL's host, so SNI and certificate verification
use the name, not the address. The pool keys its connections by (scheme, host, port): a kept-alive
connection is reused only for the host it was opened, and checked, for.

httpx's transports take no network backend, so :class:`PinnedTransport` replaces its pool with one that
has ours (``tests/connectors/test_ssrf_guard.py`` fails if a later httpx stops using it).

Other choices: ``trust_env=False`` (no proxy or netrc from the environment: a proxy would connect to the
name itself), no cookie jar (one run's cookies never reach another), redirects followed by the caller
(each hop is checked again), and httpx's own request log line shows only the URL's origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import weakref
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import certifi
import httpcore
import httpx

from automate.conf import get_settings
from automate.core.errors import UnsafeAddressError

from ..base import PermanentStepError
from .guard import Target

__all__ = ["PinnedBackend", "PinnedTransport", "aclose_all", "pinned", "shared_client"]

_PIN: ContextVar[Target | None] = ContextVar("automate_http_pin", default=None)


@contextlib.contextmanager
def pinned(target: Target) -> Iterator[None]:
    """Connections opened inside this block go to ``target``'s checked addresses, and only for its host."""
    token = _PIN.set(target)
    try:
        yield
    finally:
        _PIN.reset(token)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the pinned target's checked addresses, in order, never resolving a name."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()
        self.connects: list[tuple[str, str, int]] = []  # (host, address, port), the last 100: for tests

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        target = _PIN.get()
        if target is None or target.host != host or target.port != port:
            raise UnsafeAddressError(f"refusing to connect to {host}:{port}: the SSRF guard did not check it")
        failure: Exception | None = None
        for address in target.addresses:
            try:
                stream = await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            self.connects.append((host, address, port))
            del self.connects[:-100]
            return stream
        assert failure is not None  # a Target has at least one address
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeAddressError("unix sockets are not reachable through the http connector")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over an httpcore pool whose network backend is a :class:`PinnedBackend`."""

    def __init__(self, *, ssl_context: ssl.SSLContext, limits: httpx.Limits) -> None:
        super().__init__(verify=ssl_context, limits=limits, trust_env=False)
        self.backend = PinnedBackend()
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=self.backend,
        )


class _NoCookies(DefaultCookiePolicy):
    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False


class _OriginOnly(logging.Filter):
    """httpx logs every request with its full URL (query string included): keep only the origin."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(
                f"{a.scheme}://{a.netloc.decode('ascii', 'replace').rpartition('@')[2]}/..."
                if isinstance(a, httpx.URL)
                else a
                for a in record.args
            )
        return True


logging.getLogger("httpx").addFilter(_OriginOnly())


def _ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certifi.where())
    if ca_bundle:
        try:
            context.load_verify_locations(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise PermanentStepError(f"DJANGO_AUTOMATE.HTTP.ca_bundle: cannot load {ca_bundle!r}: {reason}") from None
    return context


@dataclass(slots=True)
class _Clients:
    current: httpx.AsyncClient
    key: tuple[Any, ...]
    retired: list[httpx.AsyncClient] = field(default_factory=list)


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Clients] = weakref.WeakKeyDictionary()


def shared_client() -> httpx.AsyncClient:
    """This event loop's client, made on first use (and again when the HTTP settings it uses change)."""
    loop = asyncio.get_running_loop()
    settings = get_settings().HTTP
    key = (settings.max_connections, settings.max_keepalive_connections, settings.ca_bundle)
    entry = _clients.get(loop)
    if entry is not None and entry.key == key:
        return entry.current
    limits = httpx.Limits(
        max_connections=settings.max_connections, max_keepalive_connections=settings.max_keepalive_connections
    )
    client = httpx.AsyncClient(
        transport=PinnedTransport(ssl_context=_ssl_context(settings.ca_bundle), limits=limits),
        trust_env=False,
        follow_redirects=False,
        cookies=CookieJar(policy=_NoCookies()),  # a jar, not httpx.Cookies(jar): that would copy it into a default one
    )
    if entry is None:
        _clients[loop] = _Clients(client, key)
    else:  # settings changed: requests in flight finish on the old client; aclose_all() closes it
        entry.retired.append(entry.current)
        entry.current, entry.key = client, key
    return client


def backend_of(client: httpx.AsyncClient) -> PinnedBackend:
    """The pinned backend under ``client`` (for tests and diagnostics)."""
    transport = client._transport
    assert isinstance(transport, PinnedTransport)
    return transport.backend


async def aclose_all() -> None:
    """Close the running loop's clients (their kept-alive connections); the next use makes a new one."""
    entry = _clients.pop(asyncio.get_running_loop(), None)
    if entry is None:
        return
    for client in (*entry.retired, entry.current):
        await client.aclose()

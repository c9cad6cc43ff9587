"""The SSRF guard's decisions, without a network client: which address a URL may be connected to.

:func:`check_target` parses a URL strictly (:mod:`automate.core.ssrf_urls`: decimal, octal and hex IPv4
spellings, IPv6 and IPv4-mapped literals, IDNA), refuses every scheme but http and https, resolves a host
name **once**, and checks every resolved address against the policy (:mod:`automate.core.ssrf`) built
from ``POLICY.allow_ssrf`` and ``POLICY.ssrf_allowlist``. The :class:`Target` it returns carries the
checked addresses; the client connects to those and to nothing else (``client.PinnedBackend``), so a DNS
answer that changes between the check and the connect (DNS rebinding) changes nothing.

A refusal raises :class:`SsrfDenied` (a permanent failure) naming the host and the rule, and writes a
``policy.ssrf_denied`` audit entry through the step's context. No message here carries the URL's query
string or userinfo: callers pass a ``label`` (``"POST api.example.com/v1/orders"`` or ``"slack webhook"``).
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, ip_address

from automate.conf import get_settings
from automate.core import ssrf
from automate.core.errors import UnsafeAddressError
from automate.core.ssrf import AddressPolicy, check_address
from automate.core.ssrf_urls import ParsedHost, check_url, parse_url_host

from ..base import PermanentStepError, StepContext, TransientStepError

__all__ = [
    "Resolver",
    "SsrfDenied",
    "Target",
    "check_target",
    "current_policy",
    "safe_location",
    "set_resolver",
    "system_resolver",
]

Resolver = Callable[[str, int], Awaitable[list[str]]]

_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.-]*):")
_HINT = "add the host or its network to DJANGO_AUTOMATE.POLICY.ssrf_allowlist to allow it"


class SsrfDenied(PermanentStepError):
    """A request the SSRF policy refused. ``rule`` says which rule (``"loopback 127.0.0.0/8"``)."""

    def __init__(self, message: str, *, host: str, address: str | None, rule: str) -> None:
        super().__init__(message)
        self.host = host
        self.address = address
        self.rule = rule


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: where to connect (``addresses``, every one allowed by the policy, in order)."""

    parsed: ParsedHost
    addresses: tuple[str, ...]

    @property
    def host(self) -> str:
        return self.parsed.host

    @property
    def port(self) -> int:
        return self.parsed.port


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses of ``host`` from the operating system's resolver (getaddrinfo, off the loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


_resolver: Resolver = system_resolver


def set_resolver(resolver: Resolver | None) -> Resolver:
    """Replace the resolver (``None``: the system's); returns the previous one. A seam for tests that
    need a name to resolve to a chosen address, or to count lookups."""
    global _resolver
    previous = _resolver
    _resolver = resolver or system_resolver
    return previous


@lru_cache(maxsize=8)
def _policy(allow_ssrf: bool, allowlist: tuple[str, ...]) -> AddressPolicy:
    return AddressPolicy.from_settings(allow_ssrf, allowlist)


def current_policy() -> AddressPolicy:
    """The address policy of the current settings; a bad allowlist entry fails the step, named."""
    policy = get_settings().POLICY
    try:
        return _policy(policy.allow_ssrf, policy.ssrf_allowlist)
    except ValueError as exc:
        raise PermanentStepError(f"DJANGO_AUTOMATE.POLICY.ssrf_allowlist: {exc}") from None


def safe_location(url: str) -> str:
    """``host[:port]/path`` of ``url`` for messages: no scheme, userinfo, query string or fragment."""
    match = re.match(r"\s*[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)([^?#]*)", url)
    if match is None:
        return "(unparseable URL)"
    authority = match.group(1).rpartition("@")[2]
    return (authority + match.group(2))[:200] or "(no host)"


def _reason(exc: UnsafeAddressError, url: str) -> str:
    """The reason of a ``ssrf_urls`` error without the URL it quotes (which may carry a query string)."""
    shown = url if len(url) <= 200 else url[:200] + "..."
    message, prefix = str(exc), f"unsafe URL {shown!r}: "
    return message[len(prefix) :] if message.startswith(prefix) else "not an absolute http(s) URL"


def _network(addr: str) -> str:
    """The blocked range ``addr`` falls in (``127.0.0.0/8``), or "" when it is judged by an embedding."""
    try:
        ip = ip_address(addr.split("%", 1)[0])
    except ValueError:
        return ""
    table = ssrf._V4_TABLE if isinstance(ip, IPv4Address) else ssrf._V6_TABLE
    for row in table:
        if ip in row.network:
            return str(row.network) if row.block is not None else ""
    return ""


def _rule(exc: UnsafeAddressError) -> tuple[str | None, str]:
    """(address, rule) of a ``check_address`` refusal."""
    address = getattr(exc, "address", None)
    category = getattr(exc, "category", None) or "blocked"
    if address is None:
        return None, category
    network = _network(str(address))
    return str(address), f"{category} {network}" if network else category


def _deny(
    ctx: StepContext, label: str, host: str, address: str | None, rule: str, text: str | None = None
) -> SsrfDenied:
    ctx.audit("policy.ssrf_denied", f"host:{host}", {"url_host": host, "address": address, "rule": rule})
    if text is None:
        where = f"{host} ({address})" if address and address != host else host
        text = f"{where} is {rule}; {_HINT}"
    return SsrfDenied(f"{label}: blocked by the SSRF policy: {text}", host=host, address=address, rule=rule)


def _host_of(url: str) -> str:
    """The host of a URL that will not be parsed (a refused scheme), for the audit entry."""
    authority = safe_location(url).split("/", 1)[0]
    if authority.startswith("["):
        return authority[1 : authority.find("]")] if "]" in authority else authority
    return authority.rpartition(":")[0] if authority.count(":") == 1 else authority


async def _resolve(host: str, port: int, label: str) -> list[str]:
    try:
        addresses = await _resolver(host, port)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_NONAME:
            raise PermanentStepError(f"{label}: the host {host} does not exist (DNS: {exc.strerror})") from None
        raise TransientStepError(f"{label}: DNS lookup of {host} failed ({exc.strerror})") from None
    except OSError as exc:
        raise TransientStepError(f"{label}: DNS lookup of {host} failed ({exc.strerror or exc})") from None
    if not addresses:
        raise TransientStepError(f"{label}: DNS lookup of {host} returned no address")
    return addresses


async def check_target(url: str, ctx: StepContext, label: str) -> Target:
    """Parse, resolve once and check ``url``; the :class:`Target` to connect to, or :class:`SsrfDenied`.

    With ``POLICY.allow_ssrf`` the policy relaxes the ranges of one's own network (loopback, RFC 1918,
    unique-local); link-local and cloud metadata addresses still need an allowlist entry. The scheme
    rule, the strict parsing and the pinning hold whatever the policy.
    """
    scheme_match = _SCHEME.match(url)
    scheme = scheme_match.group(1).lower() if scheme_match else ""
    if scheme not in ("http", "https"):
        rule = f"scheme {scheme!r} not allowed" if scheme else "no scheme"
        host = _host_of(url)
        text = f"{rule} (only absolute http:// and https:// URLs are)"
        raise _deny(ctx, label, host, None, rule, text)
    try:
        parsed = parse_url_host(url)
    except UnsafeAddressError as exc:
        raise PermanentStepError(f"{label}: invalid URL: {_reason(exc, url)}") from None
    policy = current_policy()
    try:
        check_url(parsed.url, policy)  # the address of an IP literal; names such as localhost, metadata
    except UnsafeAddressError as exc:
        if parsed.ip is not None:
            address, rule = _rule(exc)
            raise _deny(ctx, label, parsed.host, address, rule) from None
        reason = _reason(exc, parsed.url)  # "localhost is a loopback name"
        rule = reason.removeprefix(f"{parsed.host} is ").removeprefix("a ")
        raise _deny(ctx, label, parsed.host, None, rule, f"{reason}; {_HINT}") from None
    if parsed.ip is not None:
        return Target(parsed, (str(parsed.ip),))
    addresses = await _resolve(parsed.host, parsed.port, label)
    for address in addresses:
        try:
            check_address(address, policy, host=parsed.host)
        except UnsafeAddressError as exc:
            blocked, rule = _rule(exc)
            raise _deny(ctx, label, parsed.host, blocked or address, rule) from None
    return Target(parsed, tuple(addresses))


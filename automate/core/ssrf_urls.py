"""URL host parsing for the SSRF policy: find the host a client would really connect to.

:func:`parse_url_host` is deliberately strict. It accepts only ``http``/``https`` URLs of the form
``scheme://host[:port][/path][?query][#fragment]`` and rejects, rather than guesses at, anything that
URL parsers disagree on (backslashes, whitespace and control characters, userinfo, extra slashes,
zone ids). Hosts are normalised the way browsers (WHATWG URL) and libc ``inet_aton`` read them:

* percent-decoding, then UTS 46 mapping (so fullwidth digits and dots, or ``。``, become ASCII);
* a host that "ends in a number" is an IPv4 address in any ``inet_aton`` spelling (decimal
  ``2130706433``, octal ``0177.0.0.1``, hex ``0x7f.0.0.1``, short ``127.1``, mixed) or is rejected;
* one trailing dot is dropped; other names are converted to IDNA A-labels.

:func:`check_url` then applies the name rules (``localhost``, ``*.localhost`` and a few loopback and
cloud metadata names are blocked by name) and, for IP literals, the address policy. DNS is not
resolved here: the connector checks each resolved address with ``check_address``.

Name decisions: loopback names (``localhost``, ``*.localhost``, ``localhost.localdomain``,
``ip6-localhost``, ``ip6-loopback``) are allowed under ``allow_private`` like loopback addresses are;
metadata names (``metadata.google.internal``, ``metadata``, ``instance-data`` and
``instance-data.ec2.internal``) are not. An allowlisted hostname allows either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from urllib.parse import unquote

from automate.core.errors import UnsafeAddressError
from automate.core.ssrf import (
    DEFAULT,
    AddressPolicy,
    IPAddress,
    _ends_in_number,
    _map_host,
    check_address,
    normalize_hostname,
)

__all__ = ["DEFAULT_PORTS", "ParsedHost", "check_url", "parse_url_host"]

DEFAULT_PORTS = {"http": 80, "https": 443}

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):", re.ASCII)
_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)
_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_IPV4_PART = re.compile(r"0[xX](?P<hex>[0-9A-Fa-f]*)|0(?P<oct>[0-7]*)|(?P<dec>[1-9][0-9]*)", re.ASCII)
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]+", re.ASCII)

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"})


@dataclass(frozen=True, slots=True)
class ParsedHost:
    """The connect target of a URL. ``host`` is lower-case ASCII (IDNA A-labels), without a trailing
    dot; for an IP literal it is the canonical address (IPv6 without brackets) and ``ip`` is set.
    ``port`` is the explicit port or the scheme default. ``rest`` is the raw path, query and fragment.
    """

    scheme: str
    host: str
    port: int
    ip: IPAddress | None = None
    rest: str = ""

    @property
    def authority(self) -> str:
        """``host[:port]`` with IPv6 in brackets and the port only when it is not the default."""
        host = f"[{self.host}]" if isinstance(self.ip, IPv6Address) else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL rebuilt from the normalised parts: send this one, so the checked host is the one
        connected to."""
        return f"{self.scheme}://{self.authority}{self.rest}"


def _reject(url: str, reason: str) -> UnsafeAddressError:
    shown = url if len(url) <= 200 else url[:200] + "..."
    return UnsafeAddressError(f"unsafe URL {shown!r}: {reason}")


def parse_ipv4_number_host(host: str) -> IPv4Address:
    """Parse an ``inet_aton``/WHATWG IPv4 spelling (1 to 4 parts, each decimal, octal with a leading
    ``0`` or hex with ``0x``; the last part fills the remaining bytes). ValueError if invalid."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not 1 <= len(parts) <= 4:
        raise ValueError(f"{host!r} has {len(parts)} parts, an IPv4 address has at most 4")
    numbers: list[int] = []
    for part in parts:
        match = _IPV4_PART.fullmatch(part) if len(part) <= 40 else None
        if match is None:
            raise ValueError(f"{host!r}: {part!r} is not a decimal, octal or hex number")
        if match["hex"] is not None:
            numbers.append(int(match["hex"] or "0", 16))
        elif match["oct"] is not None:
            numbers.append(int(match["oct"] or "0", 8))
        else:
            numbers.append(int(match["dec"]))
    *leading, last = numbers
    if any(n > 255 for n in leading):
        raise ValueError(f"{host!r}: a part other than the last is above 255")
    if last >= 256 ** (5 - len(numbers)):
        raise ValueError(f"{host!r}: the last part is too large")
    value = last
    for i, n in enumerate(leading):
        value += n << (8 * (3 - i))
    return IPv4Address(value)


def _split(url: str) -> tuple[str, str, str]:
    """(scheme, authority, rest) of an absolute http(s) URL."""
    if not isinstance(url, str):
        raise UnsafeAddressError(f"unsafe URL {url!r}: not a string")
    bad = _BAD_URL_CHARS.search(url)
    if bad:
        raise _reject(
            url,
            f"contains {bad.group()!r} (whitespace, control characters and backslashes "
            "are not allowed; percent-encode them)",
        )
    scheme_match = _SCHEME.match(url)
    if scheme_match is None:
        raise _reject(url, "no scheme; only absolute http:// and https:// URLs are allowed")
    scheme = scheme_match.group(1).lower()
    if scheme not in DEFAULT_PORTS:
        raise _reject(url, f"scheme {scheme!r} is not allowed; only http and https are")
    tail = url[scheme_match.end() :]
    if not tail.startswith("//"):
        raise _reject(url, "expected '//' after the scheme")
    tail = tail[2:]
    end = len(tail)
    for sep in "/?#":
        idx = tail.find(sep)
        if idx != -1:
            end = min(end, idx)
    return scheme, tail[:end], tail[end:]


def _host_and_port(url: str, scheme: str, authority: str) -> tuple[str, bool, int]:
    """(raw host, bracketed, port)."""
    if "@" in authority:
        raise _reject(url, "userinfo (credentials before '@') is not allowed in URLs; use a secret header")
    if authority.startswith("["):
        close = authority.find("]")
        if close == -1:
            raise _reject(url, "unterminated '[' in the host")
        host, bracketed, after = authority[1:close], True, authority[close + 1 :]
        if after and not after.startswith(":"):
            raise _reject(url, f"unexpected {after!r} after the IPv6 literal")
        port_text = after[1:] if after else None
    else:
        host, colon, port_after = authority.partition(":")
        bracketed, port_text = False, (port_after if colon else None)
    if port_text is None:
        return host, bracketed, DEFAULT_PORTS[scheme]
    if not _PORT.fullmatch(port_text) or not 0 < int(port_text) <= 65535:
        raise _reject(url, f"invalid port {port_text!r}")
    return host, bracketed, int(port_text)


def _parse_ipv6_literal(url: str, host: str) -> IPv6Address:
    if "%" in host:
        raise _reject(url, "IPv6 zone identifiers are not allowed")
    if not _IPV6_CHARS.fullmatch(host):
        raise _reject(url, f"[{host}] is not an IPv6 literal")
    try:
        return IPv6Address(host)
    except ValueError as exc:
        raise _reject(url, f"[{host}] is not an IPv6 literal ({exc})") from None


def parse_url_host(url: str) -> ParsedHost:
    """Split and normalise an http(s) URL's host; UnsafeAddressError for anything malformed or
    ambiguous. See the module docstring for what is accepted."""
    scheme, authority, rest = _split(url)
    raw_host, bracketed, port = _host_and_port(url, scheme, authority)
    if not raw_host:
        raise _reject(url, "empty host")
    if bracketed:
        ip6 = _parse_ipv6_literal(url, raw_host)
        return ParsedHost(scheme, str(ip6), port, ip6, rest)
    if _BAD_PERCENT.search(raw_host):
        raise _reject(url, "invalid percent-encoding in the host")
    try:
        decoded = unquote(raw_host, errors="strict")
    except UnicodeDecodeError:
        raise _reject(url, "percent-encoded host is not UTF-8") from None
    if _BAD_URL_CHARS.search(decoded) or "%" in decoded:
        raise _reject(url, "percent-encoded host decodes to forbidden characters")
    try:
        mapped = _map_host(decoded)
    except ValueError as exc:
        raise _reject(url, str(exc)) from None
    if not mapped or mapped == ".":
        raise _reject(url, "empty host")
    if _ends_in_number(mapped):
        try:
            ip4 = parse_ipv4_number_host(mapped)
        except ValueError as exc:
            raise _reject(url, f"host ends in a number but is not a valid IPv4 address: {exc}") from None
        return ParsedHost(scheme, str(ip4), port, ip4, rest)
    try:
        name = normalize_hostname(mapped)
    except ValueError as exc:
        raise _reject(url, str(exc)) from None
    return ParsedHost(scheme, name, port, None, rest)


def check_url(url: str, policy: AddressPolicy = DEFAULT) -> ParsedHost:
    """Parse ``url`` and apply the name rules and, for an IP literal, the address policy.

    Returns the :class:`ParsedHost`; raises UnsafeAddressError. For a name, the caller must still
    resolve it and ``check_address(ip, policy, host=parsed.host)`` every resolved address.
    """
    parsed = parse_url_host(url)
    if parsed.ip is not None:
        check_address(parsed.ip, policy)
        return parsed
    host = parsed.host
    if policy.host_allowlisted(host):
        return parsed
    if host in _METADATA_NAMES:
        raise _reject(url, f"{host} is a cloud metadata name")
    if (host in _LOOPBACK_NAMES or host.endswith(".localhost")) and not policy.allow_private:
        raise _reject(url, f"{host} is a loopback name")
    return parsed

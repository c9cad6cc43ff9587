"""The SSRF address policy, in pure Python: which IP addresses an outbound request may reach.

The HTTP connector resolves DNS itself and calls :func:`check_address` for every resolved address
(and :func:`automate.core.ssrf_urls.check_url` for the URL and every redirect). Nothing here does I/O.

Blocked ranges are an explicit, ordered table (first match wins) rather than ``ipaddress``'s
``is_private``/``is_global`` flags, whose contents changed between Python versions. Each row carries a
category (used in error messages) and whether ``allow_private`` (the ``POLICY.allow_ssrf`` setting)
relaxes it.

Decisions, kept stable on purpose:

* ``allow_private`` relaxes only the ranges that mean "a host on my own network": loopback, RFC 1918,
  CGNAT (100.64/10), IPv6 unique-local (fc00::/7) and the deprecated site-local (fec0::/10). It does
  **not** relax link-local (169.254/16, fe80::/10, where cloud metadata and credential endpoints
  live), the known cloud metadata addresses (including ``100.100.100.200`` and ``fd00:ec2::254``,
  which sit inside relaxable ranges), unspecified, broadcast, multicast, documentation,
  benchmarking or reserved space. Those need an explicit allowlist entry.
* The allowlist takes precedence over every rule, including metadata: an entry is an explicit
  operator decision. Networks match the address itself and, for IPv4-mapped IPv6, the mapped IPv4.
  Hostname entries match the ``host`` passed to :func:`check_address` (exact, or ``*.suffix`` which
  matches any subdomain at any depth but not the bare suffix).
* IPv4 embedded in IPv6: IPv4-mapped (``::ffff:0:0/96``), NAT64 well-known (``64:ff9b::/96``) and
  6to4 (``2002::/16``) are judged by their embedded IPv4. Teredo (``2001::/32``) is judged by both the
  server (bits 32-63) and the client (inverse of the low 32 bits); either blocked blocks it. The
  deprecated IPv4-compatible (``::/96``), IPv4-translated (``::ffff:0:0:0/96``) and the local-use
  NAT64 prefix (``64:ff9b:1::/48``, whose embedding length is operator-chosen) are blocked outright.
* Any IPv6 address outside global unicast ``2000::/3`` is blocked as reserved.
* The whole of 192.0.0.0/24 and 2001::/23 is blocked, including the few anycast addresses IANA marks
  globally reachable there: no webhook lives on them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from automate.core.errors import UnsafeAddressError

try:  # a dependency of httpx; the fallback keeps this module importable without it
    import idna as _idna
except ImportError:  # pragma: no cover - exercised by monkeypatching in the tests
    _idna = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT",
    "AddressPolicy",
    "IPAddress",
    "IPNetwork",
    "check_address",
    "classify",
    "is_address_allowed",
    "normalize_hostname",
]

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

_MAX_U32 = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class _Block:
    category: str
    relaxable: bool  # True when allow_private unblocks it


@dataclass(frozen=True, slots=True)
class _Row:
    network: IPNetwork
    block: _Block | None  # None: an embedding, judged by ``extract``
    extract: Callable[[int], tuple[tuple[str, IPv4Address], ...]] | None = None


def _v4(category: str, cidr: str, relaxable: bool = False) -> _Row:
    return _Row(IPv4Network(cidr), _Block(category, relaxable))


def _v6(category: str, cidr: str, relaxable: bool = False) -> _Row:
    return _Row(IPv6Network(cidr), _Block(category, relaxable))


def _low32(label: str) -> Callable[[int], tuple[tuple[str, IPv4Address], ...]]:
    return lambda n: ((label, IPv4Address(n & _MAX_U32)),)


def _sixtofour(n: int) -> tuple[tuple[str, IPv4Address], ...]:
    return (("6to4", IPv4Address((n >> 80) & _MAX_U32)),)


def _teredo(n: int) -> tuple[tuple[str, IPv4Address], ...]:
    return (
        ("Teredo server", IPv4Address((n >> 64) & _MAX_U32)),
        ("Teredo client", IPv4Address(~n & _MAX_U32)),
    )


_METADATA = "link-local (cloud metadata)"
_PRIVATE = "private (RFC 1918)"

# First match wins: specific rows come before the ranges that contain them.
_V4_TABLE: tuple[_Row, ...] = (
    _v4(_METADATA, "169.254.169.254/32"),  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
    _v4(_METADATA, "169.254.170.2/32"),  # AWS ECS task credentials
    _v4(_METADATA, "169.254.170.23/32"),  # AWS EKS pod identity
    _v4("cloud metadata (Alibaba Cloud)", "100.100.100.200/32"),  # inside CGNAT, yet not relaxable
    _v4("cloud metadata (Oracle Cloud)", "192.0.0.192/32"),
    _v4("unspecified", "0.0.0.0/32"),
    _v4("broadcast", "255.255.255.255/32"),
    _v4("reserved (this network)", "0.0.0.0/8"),  # RFC 791
    _v4(_PRIVATE, "10.0.0.0/8", relaxable=True),
    _v4("shared address space (CGNAT)", "100.64.0.0/10", relaxable=True),  # RFC 6598
    _v4("loopback", "127.0.0.0/8", relaxable=True),
    _v4("link-local", "169.254.0.0/16"),  # RFC 3927
    _v4(_PRIVATE, "172.16.0.0/12", relaxable=True),
    _v4("reserved (IETF protocol assignments)", "192.0.0.0/24"),  # RFC 6890
    _v4("documentation (TEST-NET-1)", "192.0.2.0/24"),  # RFC 5737
    _v4("reserved (deprecated 6to4 relay anycast)", "192.88.99.0/24"),  # RFC 7526
    _v4(_PRIVATE, "192.168.0.0/16", relaxable=True),
    _v4("benchmarking", "198.18.0.0/15"),  # RFC 2544
    _v4("documentation (TEST-NET-2)", "198.51.100.0/24"),
    _v4("documentation (TEST-NET-3)", "203.0.113.0/24"),
    _v4("multicast", "224.0.0.0/4"),
    _v4("reserved (future use)", "240.0.0.0/4"),  # RFC 1112
)

_V6_TABLE: tuple[_Row, ...] = (
    _v6("cloud metadata (AWS IMDS IPv6)", "fd00:ec2::254/128"),  # inside ULA, yet not relaxable
    _v6("unspecified", "::/128"),
    _v6("loopback", "::1/128", relaxable=True),
    _Row(IPv6Network("::ffff:0:0/96"), None, _low32("IPv4-mapped")),  # RFC 4291
    _v6("IPv4-compatible (deprecated)", "::/96"),  # RFC 4291 2.5.5.1
    _v6("IPv4-translated (deprecated)", "::ffff:0:0:0/96"),  # RFC 2765
    _Row(IPv6Network("64:ff9b::/96"), None, _low32("NAT64")),  # RFC 6052
    _v6("NAT64 local-use", "64:ff9b:1::/48"),  # RFC 8215
    _v6("discard-only", "100::/64"),  # RFC 6666
    _Row(IPv6Network("2001::/32"), None, _teredo),  # RFC 4380
    _v6("reserved (IETF protocol assignments)", "2001::/23"),  # RFC 2928
    _v6("documentation", "2001:db8::/32"),  # RFC 3849
    _Row(IPv6Network("2002::/16"), None, _sixtofour),  # RFC 3056
    _v6("documentation", "3fff::/20"),  # RFC 9637
    _v6("unique local (ULA)", "fc00::/7", relaxable=True),  # RFC 4193
    _v6("link-local", "fe80::/10"),
    _v6("site-local (deprecated)", "fec0::/10", relaxable=True),  # RFC 3879
    _v6("multicast", "ff00::/8"),
)

_GLOBAL_UNICAST_V6 = IPv6Network("2000::/3")
_OUTSIDE_GLOBAL_UNICAST = _Block("reserved (outside global unicast 2000::/3)", relaxable=False)


def _coerce(ip: IPAddress | str) -> IPAddress:
    """An address object without IPv6 zone id; raises UnsafeAddressError for anything else."""
    if isinstance(ip, IPv4Address | IPv6Address):
        addr: IPAddress = ip
    elif isinstance(ip, str):
        try:
            addr = ip_address(ip.strip())
        except ValueError:
            raise UnsafeAddressError(f"{ip!r} is not an IP address") from None
    else:
        raise UnsafeAddressError(f"{ip!r} is not an IP address")
    if isinstance(addr, IPv6Address) and addr.scope_id is not None:
        addr = IPv6Address(int(addr))  # the zone does not change what the address is
    return addr


def _lookup(table: tuple[_Row, ...], addr: IPAddress) -> _Row | None:
    for row in table:
        if addr in row.network:
            return row
    return None


def _evaluate(addr: IPAddress) -> _Block | None:
    if isinstance(addr, IPv4Address):
        row = _lookup(_V4_TABLE, addr)
        return row.block if row else None
    row = _lookup(_V6_TABLE, addr)
    if row is None:
        return None if addr in _GLOBAL_UNICAST_V6 else _OUTSIDE_GLOBAL_UNICAST
    if row.extract is None:
        return row.block
    reasons: list[str] = []
    relaxable = True
    for label, v4 in row.extract(int(addr)):
        inner = _evaluate(v4)
        if inner is not None:
            reasons.append(f"{inner.category} via {label} {v4}")
            relaxable = relaxable and inner.relaxable
    return _Block("; ".join(reasons), relaxable) if reasons else None


def classify(ip: IPAddress | str) -> str | None:
    """The blocked category of ``ip`` (e.g. ``"loopback"``), or None for a public address.

    Independent of any policy: it says what the address is, not whether it is allowed.
    """
    block = _evaluate(_coerce(ip))
    return block.category if block else None


# ---------------------------------------------------------------------------------------------
# Hostnames (shared with ssrf_urls): UTS 46 mapping, IDNA, LDH validation.

_ASCII_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?", re.ASCII)
_ALL_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_HEX_NUMBER = re.compile(r"0x[0-9a-f]*", re.ASCII | re.IGNORECASE)
# Dots that UTS 46 maps to "." (ideographic, fullwidth, halfwidth ideographic); for the fallback.
_UNICODE_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def _map_host(host: str) -> str:
    """UTS 46 mapping (case fold, fullwidth to ASCII, unicode dots to "."), as browsers do."""
    if _idna is not None:
        try:
            return _idna.uts46_remap(host, std3_rules=False, transitional=False)
        except _idna.IDNAError as exc:
            raise ValueError(f"invalid host {host!r}: {exc}") from None
    return unicodedata.normalize("NFKC", host).translate(_UNICODE_DOTS).casefold()


def _ends_in_number(host: str) -> bool:
    """WHATWG "ends in a number": the host must then be an IPv4 address or is invalid."""
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    last = labels[-1]
    return bool(_ALL_DIGITS.fullmatch(last) or _HEX_NUMBER.fullmatch(last))


def _to_alabel(label: str) -> str:
    try:
        if _idna is not None:
            return _idna.alabel(label).decode("ascii")
        return label.encode("idna").decode("ascii")
    except (UnicodeError, ValueError) as exc:  # idna.IDNAError is a UnicodeError
        raise ValueError(f"invalid IDNA label {label!r}: {exc}") from None


def normalize_hostname(host: str) -> str:
    """The lower-case ASCII (IDNA A-label) form of a DNS name; ValueError if it is not one.

    Maps with UTS 46, strips one trailing dot, accepts letters, digits, ``-`` and ``_``. Rejects
    names that end in a number (those are IPv4 forms, see ``ssrf_urls``) and labels made only of
    non-ASCII digits (they look like an address and nothing resolves them as one).
    """
    mapped = _map_host(host)
    if mapped.endswith("."):
        mapped = mapped[:-1]
    if not mapped:
        raise ValueError(f"invalid host {host!r}: empty")
    labels = mapped.split(".")
    out: list[str] = []
    for label in labels:
        if not label.isascii():
            if all(ch == "-" or unicodedata.decimal(ch, None) is not None for ch in label):
                raise ValueError(f"invalid host {host!r}: label {label!r} is made of non-ASCII digits")
            label = _to_alabel(label)
        elif label.startswith("xn--"):
            try:
                if _idna is not None:
                    _idna.decode(label)
                else:
                    label.encode("ascii").decode("idna")
            except (UnicodeError, ValueError) as exc:
                raise ValueError(f"invalid host {host!r}: bad A-label {label!r}: {exc}") from None
        if not _ASCII_LABEL.fullmatch(label):
            raise ValueError(f"invalid host {host!r}: bad label {label!r}")
        out.append(label)
    name = ".".join(out)
    if len(name) > 253:
        raise ValueError(f"invalid host {host!r}: longer than 253 characters")
    if _ends_in_number(name):
        raise ValueError(f"invalid host {host!r}: ends in a number, so it is an IPv4 form, not a name")
    return name


def _hostname_matches(host: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


# ---------------------------------------------------------------------------------------------
# The policy.


def _parse_allow_entry(entry: object) -> IPNetwork | str:
    if isinstance(entry, IPv4Network | IPv6Network):
        return entry
    if isinstance(entry, IPv4Address | IPv6Address):
        return ip_network(entry)
    if not isinstance(entry, str):
        raise ValueError(f"invalid SSRF allowlist entry {entry!r}: expected a CIDR or a hostname string")
    text = entry.strip()
    if not text:
        raise ValueError(f"invalid SSRF allowlist entry {entry!r}: empty")
    if "/" in text or ":" in text or (text.isascii() and _ends_in_number(text)):
        try:
            return ip_network(text, strict=True)
        except ValueError as exc:
            raise ValueError(f"invalid SSRF allowlist entry {entry!r}: not a valid CIDR network ({exc})") from None
    wildcard = text.startswith("*.")
    name = text[2:] if wildcard else text
    if "*" in name:
        raise ValueError(f"invalid SSRF allowlist entry {entry!r}: '*' is only allowed as a leading '*.'")
    try:
        name = normalize_hostname(name)
    except ValueError as exc:
        raise ValueError(f"invalid SSRF allowlist entry {entry!r}: {exc}") from None
    return f"*.{name}" if wildcard else name


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which addresses outbound requests may reach. See the module docstring for the rules.

    ``allowlist`` holds networks and hostnames (exact, or ``*.example.com`` for any subdomain); it
    is validated and normalised on construction (strings become ``ip_network`` objects or lower-case
    ASCII names), and raises ValueError naming the bad entry.
    """

    allow_private: bool = False
    allowlist: tuple[IPNetwork | str, ...] = ()
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)
    _hosts: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.allowlist, str | bytes):
            raise ValueError("the SSRF allowlist must be a list of entries, not a single string")
        entries = tuple(dict.fromkeys(_parse_allow_entry(e) for e in self.allowlist))
        object.__setattr__(self, "allowlist", entries)
        object.__setattr__(self, "_networks", tuple(e for e in entries if not isinstance(e, str)))
        object.__setattr__(self, "_hosts", tuple(e for e in entries if isinstance(e, str)))

    @classmethod
    def from_settings(cls, allow_ssrf: bool, allowlist: Iterable[str]) -> AddressPolicy:
        """Build from ``POLICY.allow_ssrf`` and the allowlist strings; ValueError names a bad entry."""
        if isinstance(allowlist, str | bytes):
            raise ValueError("the SSRF allowlist must be a list of entries, not a single string")
        return cls(allow_private=bool(allow_ssrf), allowlist=tuple(allowlist))

    def address_allowlisted(self, ip: IPAddress | str) -> bool:
        """True if an allowlisted network holds ``ip`` (or, for IPv4-mapped IPv6, its IPv4)."""
        addr = _coerce(ip)
        candidates: list[IPAddress] = [addr]
        if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
            candidates.append(addr.ipv4_mapped)
        return any(a.version == n.version and a in n for a in candidates for n in self._networks)

    def host_allowlisted(self, host: str | None) -> bool:
        """True if ``host`` (an already-normalised ASCII name; case and a trailing dot are ignored)
        matches an allowlisted hostname."""
        if not host or not self._hosts:
            return False
        name = host.lower().rstrip(".")
        return any(_hostname_matches(name, pattern) for pattern in self._hosts)


DEFAULT = AddressPolicy()


def check_address(ip: IPAddress | str, policy: AddressPolicy = DEFAULT, host: str | None = None) -> None:
    """Raise UnsafeAddressError unless ``policy`` allows connecting to ``ip``.

    ``host`` is the name ``ip`` was resolved from, if any; an allowlisted hostname allows whatever it
    resolves to. The error message names the address and the category, e.g.
    ``"169.254.169.254 is link-local (cloud metadata)"``; the error carries ``address``,
    ``category`` and ``host`` attributes.
    """
    addr = _coerce(ip)
    if policy.host_allowlisted(host) or policy.address_allowlisted(addr):
        return
    block = _evaluate(addr)
    if block is None or (block.relaxable and policy.allow_private):
        return
    where = f" (resolved from {host})" if host else ""
    hint = ""
    if policy.allow_private and not block.relaxable:
        hint = "; allow_ssrf does not cover it, add it to the SSRF allowlist explicitly"
    err = UnsafeAddressError(f"{addr}{where} is {block.category}{hint}")
    err.address = addr  # type: ignore[attr-defined]
    err.category = block.category  # type: ignore[attr-defined]
    err.host = host  # type: ignore[attr-defined]
    raise err


def is_address_allowed(ip: IPAddress | str, policy: AddressPolicy = DEFAULT) -> bool:
    """True if ``policy`` allows ``ip``. Fails closed: a string that is not an address is False."""
    try:
        check_address(ip, policy)
    except UnsafeAddressError:
        return False
    return True

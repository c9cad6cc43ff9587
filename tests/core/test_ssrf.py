"""The SSRF address policy: every blocked range, embedded IPv4, allowlist, allow_private."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from automate.core.errors import UnsafeAddressError
from automate.core.ssrf import (
    DEFAULT,
    AddressPolicy,
    check_address,
    classify,
    is_address_allowed,
)


def addresses_in(cidr: str | IPv4Network | IPv6Network) -> st.SearchStrategy[IPv4Address | IPv6Address]:
    net = ip_network(cidr)
    cls = IPv4Address if net.version == 4 else IPv6Address
    return st.integers(int(net.network_address), int(net.broadcast_address)).map(cls)


# (range, categories an address in it may get). More specific rows (metadata) may win inside a range.
BLOCKED_RANGES = [
    ("0.0.0.0/8", {"reserved (this network)", "unspecified"}),
    ("10.0.0.0/8", {"private (RFC 1918)"}),
    ("100.64.0.0/10", {"shared address space (CGNAT)", "cloud metadata (Alibaba Cloud)"}),
    ("127.0.0.0/8", {"loopback"}),
    ("169.254.0.0/16", {"link-local", "link-local (cloud metadata)"}),
    ("172.16.0.0/12", {"private (RFC 1918)"}),
    ("192.0.0.0/24", {"reserved (IETF protocol assignments)", "cloud metadata (Oracle Cloud)"}),
    ("192.0.2.0/24", {"documentation (TEST-NET-1)"}),
    ("192.88.99.0/24", {"reserved (deprecated 6to4 relay anycast)"}),
    ("192.168.0.0/16", {"private (RFC 1918)"}),
    ("198.18.0.0/15", {"benchmarking"}),
    ("198.51.100.0/24", {"documentation (TEST-NET-2)"}),
    ("203.0.113.0/24", {"documentation (TEST-NET-3)"}),
    ("224.0.0.0/4", {"multicast"}),
    ("240.0.0.0/4", {"reserved (future use)", "broadcast"}),
    ("::1/128", {"loopback"}),
    ("::/128", {"unspecified"}),
    ("::/96", {"IPv4-compatible (deprecated)", "unspecified", "loopback"}),
    ("::ffff:0:0:0/96", {"IPv4-translated (deprecated)"}),
    ("64:ff9b:1::/48", {"NAT64 local-use"}),
    ("100::/64", {"discard-only"}),
    ("2001:2::/48", {"reserved (IETF protocol assignments)"}),
    ("2001:10::/28", {"reserved (IETF protocol assignments)"}),
    ("2001:db8::/32", {"documentation"}),
    ("3fff::/20", {"documentation"}),
    ("fc00::/7", {"unique local (ULA)", "cloud metadata (AWS IMDS IPv6)"}),
    ("fe80::/10", {"link-local"}),
    ("fec0::/10", {"site-local (deprecated)"}),
    ("ff00::/8", {"multicast"}),
    ("4000::/3", {"reserved (outside global unicast 2000::/3)"}),
    ("5f00::/16", {"reserved (outside global unicast 2000::/3)"}),
    ("e000::/4", {"reserved (outside global unicast 2000::/3)"}),
]

PRIVATE_V4 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10"]
private_v4 = st.sampled_from(PRIVATE_V4).flatmap(addresses_in)
public_v4 = addresses_in("8.0.0.0/7")
public_v6 = addresses_in("2606:4700::/32")


@pytest.mark.parametrize(("cidr", "categories"), BLOCKED_RANGES, ids=[r[0] for r in BLOCKED_RANGES])
@given(data=st.data())
def test_every_address_in_a_blocked_range_is_blocked(cidr, categories, data):
    ip = data.draw(addresses_in(cidr))
    assert classify(ip) in categories
    assert classify(str(ip)) in categories
    assert not is_address_allowed(ip)
    assert not is_address_allowed(str(ip))
    with pytest.raises(UnsafeAddressError) as info:
        check_address(ip, DEFAULT)
    assert str(ip) in str(info.value)
    assert info.value.category in categories


@pytest.mark.parametrize("cidr", ["8.0.0.0/7", "1.0.0.0/8", "2606:4700::/32", "2a00::/12", "2400:cb00::/32"])
@given(data=st.data())
def test_public_addresses_are_allowed(cidr, data):
    ip = data.draw(addresses_in(cidr))
    assert classify(ip) is None
    assert is_address_allowed(ip)
    assert is_address_allowed(str(ip))
    check_address(ip)  # does not raise


@given(st.integers(0, 2**32 - 1).map(IPv4Address))
def test_ipv4_policy_is_at_least_as_strict_as_stdlib_is_global(ip):
    if is_address_allowed(ip):
        assert ip.is_global, ip


@given(st.integers(0, 2**128 - 1).map(IPv6Address))
def test_ipv6_outside_the_embeddings_is_at_least_as_strict_as_stdlib(ip):
    embedded = [ip_network(n) for n in ("::ffff:0:0/96", "64:ff9b::/96", "2001::/32", "2002::/16")]
    if is_address_allowed(ip) and not any(ip in n for n in embedded):
        assert ip.is_global, ip


@pytest.mark.parametrize(
    ("ip", "category"),
    [
        ("169.254.169.254", "link-local (cloud metadata)"),
        ("169.254.170.2", "link-local (cloud metadata)"),
        ("100.100.100.200", "cloud metadata (Alibaba Cloud)"),
        ("fd00:ec2::254", "cloud metadata (AWS IMDS IPv6)"),
        ("0.0.0.0", "unspecified"),
        ("255.255.255.255", "broadcast"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("127.0.0.1", "loopback"),
        ("172.31.255.255", "private (RFC 1918)"),
        ("::10.0.0.1", "IPv4-compatible (deprecated)"),
        ("::8.8.8.8", "IPv4-compatible (deprecated)"),
        ("fe80::1%eth0", "link-local"),
        ("::ffff:127.0.0.1", "loopback via IPv4-mapped 127.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "link-local (cloud metadata) via NAT64 169.254.169.254"),
        ("2002:0a00:0001::1", "private (RFC 1918) via 6to4 10.0.0.1"),
        ("64:ff9b:1::808:808", "NAT64 local-use"),
    ],
)
def test_exact_categories_are_stable(ip, category):
    assert classify(ip) == category


@pytest.mark.parametrize(
    "ip", ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_neighbours_of_blocked_ranges_are_public(ip):
    assert classify(ip) is None
    assert is_address_allowed(ip)


def test_error_message_names_address_category_and_host():
    with pytest.raises(UnsafeAddressError, match=r"^169\.254\.169\.254 is link-local \(cloud metadata\)$"):
        check_address("169.254.169.254", DEFAULT)
    with pytest.raises(UnsafeAddressError) as info:
        check_address(IPv4Address("10.0.0.5"), DEFAULT, host="db.internal")
    err = info.value
    assert str(err) == "10.0.0.5 (resolved from db.internal) is private (RFC 1918)"
    assert (err.address, err.category, err.host) == (IPv4Address("10.0.0.5"), "private (RFC 1918)", "db.internal")
    assert isinstance(err, ValueError)


@pytest.mark.parametrize("bad", ["not-an-ip", "", "127.1", "0x7f000001", "[::1]", "1.2.3.4/32", None, 2130706433])
def test_non_addresses_fail_closed(bad):
    assert is_address_allowed(bad) is False
    with pytest.raises(UnsafeAddressError, match="is not an IP address"):
        check_address(bad)
    with pytest.raises(UnsafeAddressError):
        classify(bad)


# ------------------------------------------------------------------------------------ embedded v4


def _teredo(server: IPv4Address, client: IPv4Address) -> IPv6Address:
    return IPv6Address((0x20010000 << 96) | (int(server) << 64) | (0xFFFF << 32) | (~int(client) & 0xFFFFFFFF))


EMBEDDINGS = {
    "mapped": lambda v4: IPv6Address((0xFFFF << 32) | int(v4)),
    "nat64": lambda v4: IPv6Address((0x0064FF9B << 96) | int(v4)),
    "6to4": lambda v4: IPv6Address((0x2002 << 112) | (int(v4) << 80) | 0x1234),
    "teredo-client": lambda v4: _teredo(IPv4Address("8.8.8.8"), v4),
    "teredo-server": lambda v4: _teredo(v4, IPv4Address("8.8.4.4")),
}


@pytest.mark.parametrize("form", EMBEDDINGS)
@given(v4=private_v4)
def test_private_ipv4_embedded_in_ipv6_is_blocked(form, v4):
    v6 = EMBEDDINGS[form](v4)
    category = classify(v6)
    assert category is not None
    assert str(v4) in category
    assert classify(v4) in category
    assert not is_address_allowed(v6)


@pytest.mark.parametrize("form", EMBEDDINGS)
@given(v4=public_v4)
def test_public_ipv4_embedded_in_ipv6_is_judged_by_the_ipv4(form, v4):
    assert is_address_allowed(EMBEDDINGS[form](v4))


def test_stdlib_agrees_with_our_embedding_arithmetic():
    v4 = IPv4Address("10.9.8.7")
    assert EMBEDDINGS["mapped"](v4).ipv4_mapped == v4
    assert EMBEDDINGS["6to4"](v4).sixtofour == v4
    assert EMBEDDINGS["teredo-client"](v4).teredo == (IPv4Address("8.8.8.8"), v4)
    assert EMBEDDINGS["teredo-server"](v4).teredo == (v4, IPv4Address("8.8.4.4"))


@given(v4=public_v4)
def test_ipv4_compatible_is_blocked_even_for_public_ipv4(v4):
    assert classify(IPv6Address(int(v4))) == "IPv4-compatible (deprecated)"


# ------------------------------------------------------------------------------------ allowlist


@given(ip=addresses_in("10.1.2.0/24"))
def test_allowlisted_network_takes_precedence(ip):
    policy = AddressPolicy.from_settings(False, ["10.1.2.0/24"])
    assert is_address_allowed(ip, policy)
    assert not is_address_allowed(ip, DEFAULT)
    # IPv4-mapped form of an allowlisted IPv4 is the same destination.
    assert is_address_allowed(IPv6Address((0xFFFF << 32) | int(ip)), policy)


@given(ip=addresses_in("10.1.0.0/16").filter(lambda a: a not in ip_network("10.1.2.0/24")))
def test_neighbours_of_an_allowlisted_network_stay_blocked(ip):
    policy = AddressPolicy.from_settings(False, ["10.1.2.0/24"])
    assert not is_address_allowed(ip, policy)
    with pytest.raises(UnsafeAddressError, match="private"):
        check_address(ip, policy)


def test_allowlist_beats_metadata_only_when_explicit():
    assert not is_address_allowed("169.254.169.254", AddressPolicy(allow_private=True))
    assert is_address_allowed("169.254.169.254", AddressPolicy.from_settings(False, ["169.254.169.254"]))
    assert is_address_allowed("fd00:ec2::254", AddressPolicy.from_settings(False, ["fd00:ec2::/32"]))
    assert not is_address_allowed("169.254.169.253", AddressPolicy.from_settings(False, ["169.254.169.254"]))


def test_allowlisted_hostname_allows_what_it_resolves_to():
    policy = AddressPolicy.from_settings(False, ["Hooks.Internal.", "*.svc.Cluster.local"])
    assert policy.allowlist == ("hooks.internal", "*.svc.cluster.local")
    check_address("10.0.0.1", policy, host="hooks.internal")
    check_address("10.0.0.1", policy, host="HOOKS.internal.")
    check_address("10.0.0.1", policy, host="api.ns.svc.cluster.local")
    for host in ["other.internal", "svc.cluster.local", "evilsvc.cluster.local", "hooks.internal.evil.com", None]:
        with pytest.raises(UnsafeAddressError):
            check_address("10.0.0.1", policy, host=host)


def test_idna_hostnames_in_the_allowlist_are_normalised():
    policy = AddressPolicy.from_settings(False, ["*.BÜCHER.de"])
    assert policy.allowlist == ("*.xn--bcher-kva.de",)
    assert policy.host_allowlisted("shop.xn--bcher-kva.de")


def test_ip_objects_and_ipv6_cidrs_are_accepted_and_deduplicated():
    policy = AddressPolicy(allowlist=(IPv4Network("10.0.0.0/8"), ip_address("fd12::1"), "10.0.0.0/8", "fd00::/8"))
    assert policy.allowlist == (IPv4Network("10.0.0.0/8"), IPv6Network("fd12::1/128"), IPv6Network("fd00::/8"))
    assert policy == AddressPolicy(allowlist=("10.0.0.0/8", "fd12::1/128", "fd00::/8"))


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("10.0.0.0/33", "CIDR"),
        ("10.0.0.1/24", "host bits set"),
        ("1.2.3", "CIDR"),
        ("256.0.0.1", "CIDR"),
        ("fd00::/129", "CIDR"),
        ("", "empty"),
        ("   ", "empty"),
        ("*", "empty|'\\*'"),
        ("*.", "empty"),
        ("a.*.example.com", "'\\*'"),
        ("**.example.com", "'\\*'"),
        ("exa mple.com", "bad label"),
        ("example..com", "bad label"),
        ("-bad.example.com", "bad label"),
        ("host:8080", "CIDR"),
        ("https://example.com", "CIDR"),
        ("a" * 64 + ".com", "bad label"),
        ("example.123", "CIDR"),
        (42, "expected a CIDR or a hostname"),
    ],
)
def test_bad_allowlist_entries_raise_value_error_naming_the_entry(entry, reason):
    with pytest.raises(ValueError, match=reason) as info:
        AddressPolicy.from_settings(False, ["8.8.8.0/24", entry])
    assert repr(entry) in str(info.value)


def test_allowlist_must_not_be_a_bare_string():
    with pytest.raises(ValueError, match="not a single string"):
        AddressPolicy.from_settings(False, "10.0.0.0/8")
    with pytest.raises(ValueError, match="not a single string"):
        AddressPolicy(allowlist="10.0.0.0/8")


def test_policy_is_frozen_with_slots():
    policy = AddressPolicy()
    with pytest.raises(AttributeError):
        policy.allow_private = True
    assert not hasattr(policy, "__dict__")


# ------------------------------------------------------------------------------------ allow_private

RELAXED = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1/128", "fc00::/7", "fec0::/10"]
STILL_BLOCKED = [
    "169.254.0.0/16",
    "fe80::/10",
    "0.0.0.0/8",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "192.0.2.0/24",
    "198.18.0.0/15",
    "2001:db8::/32",
    "ff00::/8",
    "::/96",
    "64:ff9b:1::/48",
]
ALLOW_PRIVATE = AddressPolicy.from_settings(True, [])


@pytest.mark.parametrize("cidr", RELAXED)
@given(data=st.data())
def test_allow_private_allows_private_ranges(cidr, data):
    ip = data.draw(addresses_in(cidr).filter(lambda a: a != IPv6Address("fd00:ec2::254")))
    assert is_address_allowed(ip, ALLOW_PRIVATE)
    assert not is_address_allowed(ip, DEFAULT)


@given(ip=addresses_in("100.64.0.0/10").filter(lambda a: a != IPv4Address("100.100.100.200")))
def test_allow_private_allows_cgnat(ip):
    assert is_address_allowed(ip, ALLOW_PRIVATE)


@pytest.mark.parametrize("cidr", STILL_BLOCKED)
@given(data=st.data())
def test_allow_private_still_blocks_link_local_and_special_purpose(cidr, data):
    ip = data.draw(addresses_in(cidr).filter(lambda a: a != IPv6Address("::1")))  # ::1 is in ::/96
    assert not is_address_allowed(ip, ALLOW_PRIVATE)


@pytest.mark.parametrize("ip", ["169.254.169.254", "100.100.100.200", "fd00:ec2::254", "::ffff:169.254.169.254"])
def test_allow_private_still_blocks_cloud_metadata_and_says_how_to_allow_it(ip):
    with pytest.raises(UnsafeAddressError, match="add it to the SSRF allowlist explicitly"):
        check_address(ip, ALLOW_PRIVATE)


@given(v4=addresses_in("10.0.0.0/8"))
def test_allow_private_follows_the_embedded_ipv4(v4):
    assert is_address_allowed(EMBEDDINGS["mapped"](v4), ALLOW_PRIVATE)
    assert is_address_allowed(EMBEDDINGS["6to4"](v4), ALLOW_PRIVATE)


def test_teredo_with_one_relaxable_and_one_hard_blocked_part_stays_blocked():
    v6 = _teredo(IPv4Address("10.0.0.1"), IPv4Address("169.254.169.254"))
    assert classify(v6) == (
        "private (RFC 1918) via Teredo server 10.0.0.1; link-local (cloud metadata) via Teredo client 169.254.169.254"
    )
    assert not is_address_allowed(v6, ALLOW_PRIVATE)

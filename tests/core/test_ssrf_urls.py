"""The URL host parser: inet_aton spellings, unicode, brackets, userinfo, schemes, names."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from automate.core import ssrf
from automate.core.errors import UnsafeAddressError
from automate.core.ssrf import DEFAULT, AddressPolicy
from automate.core.ssrf_urls import ParsedHost, check_url, parse_ipv4_number_host, parse_url_host

FULLWIDTH = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in "0123456789abcdefxABCDEFX."})


@st.composite
def inet_aton_spellings(draw, value):
    """Any spelling of ``value`` that inet_aton accepts: 1-4 parts, each decimal, octal or hex."""
    nparts = draw(st.integers(1, 4))
    parts = [(value >> (8 * (3 - i))) & 0xFF for i in range(nparts - 1)]
    parts.append(value & ((1 << (8 * (5 - nparts))) - 1))
    out = []
    for n in parts:
        base = draw(st.sampled_from(["dec", "oct", "hex"]))
        if base == "dec":
            out.append(str(n))
        elif base == "oct":
            out.append("0" * draw(st.integers(1, 3)) + format(n, "o"))
        else:
            digits = format(n, "x")
            digits = "".join(c.upper() if draw(st.booleans()) else c for c in digits)
            out.append(draw(st.sampled_from(["0x", "0X"])) + "0" * draw(st.integers(0, 2)) + digits)
    return ".".join(out)


ipv4_ints = st.integers(0, 2**32 - 1)


@given(data=st.data(), value=ipv4_ints)
def test_every_inet_aton_spelling_is_the_canonical_address(data, value):
    spelling = data.draw(inet_aton_spellings(value))
    expected = IPv4Address(value)
    assert IPv4Address(socket.inet_aton(spelling)) == expected  # libc agrees the spelling is this address
    parsed = parse_url_host(f"http://{spelling}/")
    assert parsed.ip == expected
    assert parsed.host == str(expected)
    trailing_dot = parse_url_host(f"https://{spelling}.:8443/x")
    assert (trailing_dot.ip, trailing_dot.port, trailing_dot.rest) == (expected, 8443, "/x")


@given(data=st.data(), value=ipv4_ints)
def test_fullwidth_and_percent_encoded_spellings_are_caught(data, value):
    spelling = data.draw(inet_aton_spellings(value))
    assert parse_url_host(f"http://{spelling.translate(FULLWIDTH)}/").ip == IPv4Address(value)
    encoded = "".join(f"%{ord(c):02X}" if data.draw(st.booleans()) else c for c in spelling)
    assert parse_url_host(f"http://{encoded}/").ip == IPv4Address(value)


@given(
    data=st.data(),
    v4=st.sampled_from(["10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16"]).flatmap(
        lambda cidr: st.integers(
            int(ssrf.ip_network(cidr).network_address), int(ssrf.ip_network(cidr).broadcast_address)
        )
    ),
)
def test_private_addresses_in_any_spelling_are_blocked(data, v4):
    spelling = data.draw(inet_aton_spellings(v4))
    with pytest.raises(UnsafeAddressError, match=str(IPv4Address(v4)).replace(".", r"\.")):
        check_url(f"http://{spelling}/", DEFAULT)


TRICKY = [
    ("http://2130706433/", "127.0.0.1"),
    ("http://0177.0.0.1/", "127.0.0.1"),
    ("http://0x7f.0.0.1/", "127.0.0.1"),
    ("http://0x7F000001/", "127.0.0.1"),
    ("http://017700000001/", "127.0.0.1"),
    ("http://127.1/", "127.0.0.1"),
    ("http://10.1/", "10.0.0.1"),
    ("http://0xa.0.1/", "10.0.0.1"),
    ("http://0/", "0.0.0.0"),
    ("http://0x/", "0.0.0.0"),
    ("http://127.0.0.1./", "127.0.0.1"),
    ("http://127.0.0.1:8000/admin", "127.0.0.1"),
    ("http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/", "127.0.0.1"),
    ("http://127\u30020\u30020\u30021/", "127.0.0.1"),
    ("http://0\uff58\uff17\uff46.1/", "127.0.0.1"),
    ("http://%31%32%37.0.0.1/", "127.0.0.1"),
    ("http://127%2E0%2e0%2E1/", "127.0.0.1"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
    ("http://0xa9fea9fe/", "169.254.169.254"),
    ("http://0251.0376.0251.0376/", "169.254.169.254"),
    ("http://[::1]/", "::1"),
    ("http://[0:0:0:0:0:0:0:1]:8080/", "::1"),
    ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1"),
    ("http://[::FFFF:A9FE:A9FE]/", "::ffff:a9fe:a9fe"),
    ("http://[64:ff9b::7f00:1]/", "64:ff9b::7f00:1"),
    ("http://[2002:a9fe:a9fe::]/", "2002:a9fe:a9fe::"),
    ("http://[fd00:ec2::254]/", "fd00:ec2::254"),
]


@pytest.mark.parametrize(("url", "ip"), TRICKY)
def test_tricky_hosts_are_the_addresses_they_are_and_are_blocked(url, ip):
    parsed = parse_url_host(url)
    assert parsed.ip == ssrf.ip_address(ip)
    assert parsed.host == ip
    with pytest.raises(UnsafeAddressError, match=r" is "):
        check_url(url, DEFAULT)
    # The rebuilt URL names the same host, so a second parser cannot disagree.
    assert parse_url_host(parsed.url) == parsed


REJECTED = [
    ("ftp://example.com/", "scheme 'ftp'"),
    ("file:///etc/passwd", "scheme 'file'"),
    ("gopher://127.0.0.1:6379/_", "scheme 'gopher'"),
    ("javascript:alert(1)", "scheme 'javascript'"),
    ("dict://localhost:11211/", "scheme 'dict'"),
    ("localhost:8080", "scheme 'localhost'"),
    ("example.com/path", "no scheme"),
    ("//example.com/", "no scheme"),
    ("", "no scheme"),
    ("http:example.com", "expected '//'"),
    ("http:/example.com", "expected '//'"),
    ("http:///example.com", "empty host"),
    ("http://", "empty host"),
    ("http://:80/", "empty host"),
    ("http://::1/", "invalid port"),
    ("http://./", "empty host"),
    ("http://user:pw@example.com/", "userinfo"),
    ("http://example.com@127.0.0.1/", "userinfo"),
    ("http://@example.com/", "userinfo"),
    ("http://[fe80::1%25eth0]/", "zone"),
    ("http://[fe80::1%eth0]/", "zone"),
    ("http://[::1", "unterminated"),
    ("http://[::1]x/", "after the IPv6 literal"),
    ("http://[127.0.0.1]/", "not an IPv6 literal"),
    ("http://[\uff11::1]/", "not an IPv6 literal"),
    ("http://[v1.fe]/", "not an IPv6 literal"),
    ("http://[]/", "empty host"),
    ("http://127.0.0.1\\@evil.com/", "backslash"),
    ("http://evil.com\\@127.0.0.1/", "backslash"),
    ("http://exa mple.com/", "whitespace"),
    ("http://127.0.0.1\n.evil.com/", "whitespace"),
    ("http://127.0.0.\t1/", "whitespace"),
    (" http://example.com/", "whitespace"),
    ("http://example.com/\x00", "control"),
    ("http://example.com:0/", "invalid port"),
    ("http://example.com:65536/", "invalid port"),
    ("http://example.com:\uff18\uff10/", "invalid port"),
    ("http://example.com:/", "invalid port"),
    ("http://example.com:80:80/", "invalid port"),
    ("http://example.com:-1/", "invalid port"),
    ("http://1.2.3.4.5/", "at most 4"),
    ("http://256.0.0.1/", "above 255"),
    ("http://1.2.3.256/", "too large"),
    ("http://4294967296/", "too large"),
    ("http://1.16777216/", "too large"),
    ("http://09.0.0.1/", "not a decimal, octal or hex"),
    ("http://0x1g.0.0.1/", "not a decimal, octal or hex"),
    ("http://example.0x10/", "not a decimal, octal or hex"),
    ("http://example.123/", "not a decimal, octal or hex"),
    ("http://1..1/", "not a decimal, octal or hex"),
    ("http://a.b.c.d.e.f.1/", "at most 4"),
    ("http://a..b.com/", "bad label"),
    ("http://a../", "bad label"),
    ("http://-x.com/", "bad label"),
    ("http://x-.com/", "bad label"),
    ("http://" + "a" * 64 + ".com/", "bad label"),
    ("http://" + ".".join(["a" * 60] * 5) + "/", "253"),
    ("http://xn--zz.com/", "bad A-label"),
    ("http://exa*mple.com/", "bad label"),
    ("http://%zz.com/", "invalid percent-encoding"),
    ("http://%ff.com/", "not UTF-8"),
    ("http://%2500.com/", "forbidden characters"),
    ("http://ex%20ample.com/", "forbidden characters"),
    ("http://127.0.0.1%0a/", "forbidden characters"),
    ("http://\u0661\u0662\u0667.\u0660.\u0660.\u0661/", "non-ASCII digits"),
]


@pytest.mark.parametrize(("url", "reason"), REJECTED)
def test_malformed_or_ambiguous_urls_are_rejected(url, reason):
    with pytest.raises(UnsafeAddressError, match=reason):
        parse_url_host(url)
    with pytest.raises(UnsafeAddressError):
        check_url(url, AddressPolicy(allow_private=True, allowlist=("0.0.0.0/0", "::/0")))


def test_non_string_urls_are_rejected():
    with pytest.raises(UnsafeAddressError, match="not a string"):
        parse_url_host(b"http://example.com/")


GOOD = [
    ("https://example.com", ParsedHost("https", "example.com", 443, None, ""), "https://example.com"),
    (
        "HTTP://EXAMPLE.COM:8080/a/b?x=1#f",
        ParsedHost("http", "example.com", 8080, None, "/a/b?x=1#f"),
        "http://example.com:8080/a/b?x=1#f",
    ),
    ("https://example.com.:443/", ParsedHost("https", "example.com", 443, None, "/"), "https://example.com/"),
    ("http://example.com:443/", ParsedHost("http", "example.com", 443, None, "/"), "http://example.com:443/"),
    (
        "https://b\u00fccher.de/stra\u00dfe",
        ParsedHost("https", "xn--bcher-kva.de", 443, None, "/stra\u00dfe"),
        "https://xn--bcher-kva.de/stra\u00dfe",
    ),
    (
        "https://xn--bcher-kva.de/",
        ParsedHost("https", "xn--bcher-kva.de", 443, None, "/"),
        "https://xn--bcher-kva.de/",
    ),
    (
        "https://\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com/",
        ParsedHost("https", "example.com", 443, None, "/"),
        "https://example.com/",
    ),
    ("https://ex%61mple.com/", ParsedHost("https", "example.com", 443, None, "/"), "https://example.com/"),
    (
        "http://8.8.8.8/",
        ParsedHost("http", "8.8.8.8", 80, IPv4Address("8.8.8.8"), "/"),
        "http://8.8.8.8/",
    ),
    (
        "http://134744072/",
        ParsedHost("http", "8.8.8.8", 80, IPv4Address("8.8.8.8"), "/"),
        "http://8.8.8.8/",
    ),
    (
        "http://[2606:4700:4700:0:0:0:0:1111]:8443/dns",
        ParsedHost("http", "2606:4700:4700::1111", 8443, IPv6Address("2606:4700:4700::1111"), "/dns"),
        "http://[2606:4700:4700::1111]:8443/dns",
    ),
    (
        "http://[::ffff:8.8.8.8]/",
        ParsedHost("http", "::ffff:808:808", 80, IPv6Address("::ffff:8.8.8.8"), "/"),
        "http://[::ffff:808:808]/",
    ),
    ("https://my_service.internal/", ParsedHost("https", "my_service.internal", 443, None, "/"), None),
    ("https://example.com?q=@127.0.0.1", ParsedHost("https", "example.com", 443, None, "?q=@127.0.0.1"), None),
    ("https://example.com#@127.0.0.1", ParsedHost("https", "example.com", 443, None, "#@127.0.0.1"), None),
    ("https://example.com/@127.0.0.1", ParsedHost("https", "example.com", 443, None, "/@127.0.0.1"), None),
    ("http://1.2.3.4.nip.io/", ParsedHost("http", "1.2.3.4.nip.io", 80, None, "/"), None),
    ("http://0x7f.example/", ParsedHost("http", "0x7f.example", 80, None, "/"), None),
    ("http://localhost.example.com/", ParsedHost("http", "localhost.example.com", 80, None, "/"), None),
    ("http://mylocalhost/", ParsedHost("http", "mylocalhost", 80, None, "/"), None),
]


@pytest.mark.parametrize(("url", "expected", "rebuilt"), GOOD)
def test_good_urls_parse_and_pass(url, expected, rebuilt):
    assert parse_url_host(url) == expected
    assert check_url(url, DEFAULT) == expected
    assert expected.url == (rebuilt or url)
    assert parse_url_host(expected.url) == expected


@given(st.text(max_size=40))
@example("\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11")
@example("xn--")
@example("\u200b")
@example("ß.example")
def test_arbitrary_hosts_parse_to_a_safe_shape_or_raise(text):
    try:
        parsed = parse_url_host(f"http://{text}/")
    except UnsafeAddressError:
        return
    if parsed.ip is None:
        assert parsed.host.isascii()
        assert parsed.host == parsed.host.lower()
        assert not parsed.host.endswith(".")
        with pytest.raises(ValueError):
            parse_ipv4_number_host(parsed.host)
    else:
        assert parsed.host == str(parsed.ip)
    assert parse_url_host(parsed.url) == parsed


LOOPBACK_NAMES = [
    "http://localhost/",
    "http://LOCALHOST:8000/",
    "http://localhost./",
    "http://api.localhost/",
    "http://a.b.localhost./",
    "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/",
    "http://local%68ost/",
    "http://localhost.localdomain/",
    "http://ip6-localhost/",
    "http://ip6-loopback/",
]


@pytest.mark.parametrize("url", LOOPBACK_NAMES)
def test_loopback_names_are_blocked_unless_private_is_allowed(url):
    with pytest.raises(UnsafeAddressError, match="loopback name"):
        check_url(url, DEFAULT)
    assert check_url(url, AddressPolicy.from_settings(True, [])).ip is None


def test_loopback_names_can_be_allowlisted_precisely():
    exact = AddressPolicy.from_settings(False, ["localhost"])
    assert check_url("http://localhost:8000/", exact).host == "localhost"
    with pytest.raises(UnsafeAddressError, match="loopback name"):
        check_url("http://api.localhost/", exact)
    wildcard = AddressPolicy.from_settings(False, ["*.localhost"])
    assert check_url("http://api.localhost/", wildcard).host == "api.localhost"
    with pytest.raises(UnsafeAddressError, match="loopback name"):
        check_url("http://localhost/", wildcard)


@pytest.mark.parametrize(
    "url", ["http://metadata.google.internal/computeMetadata/v1/", "http://metadata/", "http://instance-data/"]
)
def test_metadata_names_are_blocked_even_with_allow_private(url):
    for policy in (DEFAULT, AddressPolicy.from_settings(True, [])):
        with pytest.raises(UnsafeAddressError, match="cloud metadata name"):
            check_url(url, policy)


def test_metadata_name_can_be_allowlisted():
    policy = AddressPolicy.from_settings(False, ["metadata.google.internal"])
    assert check_url("http://metadata.google.internal/", policy).host == "metadata.google.internal"


def test_ip_literals_go_through_the_address_policy_and_allowlist():
    policy = AddressPolicy.from_settings(False, ["10.1.2.0/24"])
    with pytest.raises(UnsafeAddressError, match=r"10\.1\.2\.3 is private"):
        check_url("http://10.1.2.3/", DEFAULT)
    assert check_url("http://10.1.2.3/", policy).ip == IPv4Address("10.1.2.3")
    assert check_url("http://0xa010203/", policy).ip == IPv4Address("10.1.2.3")
    assert check_url("http://[::ffff:10.1.2.3]/", policy).ip == IPv6Address("::ffff:10.1.2.3")
    with pytest.raises(UnsafeAddressError, match=r"10\.1\.3\.1 is private"):
        check_url("http://10.1.3.1/", policy)
    # A hostname allowlist entry does not allow an IP literal that happens to match nothing.
    with pytest.raises(UnsafeAddressError):
        check_url("http://10.9.9.9/", AddressPolicy.from_settings(False, ["hooks.internal"]))


def test_idna_package_is_the_one_in_use():
    assert ssrf._idna is not None


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/", "127.0.0.1"),
        ("http://127\u30020\u30020\u30021/", "127.0.0.1"),
        ("http://0\uff58\uff17\uff46.1/", "127.0.0.1"),
        ("http://b\u00fccher.de/", "xn--bcher-kva.de"),
        ("http://\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com/", "example.com"),
    ],
)
def test_fallback_without_the_idna_package(monkeypatch, url, host):
    monkeypatch.setattr(ssrf, "_idna", None)
    assert parse_url_host(url).host == host


@pytest.mark.parametrize(
    "url", ["http://\u0661\u0662\u0667.\u0660.\u0660.\u0661/", "http://xn--zz.com/", "http://exa mple.com/"]
)
def test_fallback_without_the_idna_package_still_rejects(monkeypatch, url):
    monkeypatch.setattr(ssrf, "_idna", None)
    with pytest.raises(UnsafeAddressError):
        parse_url_host(url)

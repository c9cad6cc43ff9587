"""The SSRF guard: every kind of internal address is refused with a clear error and an audit entry, and is
reachable only when POLICY.ssrf_allowlist trusts it; redirects are checked hop by hop; connections go to
the checked address itself (no second DNS lookup)."""

from __future__ import annotations

import socket

import httpcore
import pytest

from automate.connectors import PermanentStepError, get_connector
from automate.connectors.http import aclose_clients, client, guard
from automate.core.errors import UnsafeAddressError
from automate.models import AuditLogEntry, StepRun
from automate.runtime import emit_event
from automate.workflows import publish
from tests.connectors.http_support import Audits, automate, drain, make_ctx, worker
from tests.servers import LocalServer, Reply, TlsFiles

HTTP = get_connector("http")


@pytest.fixture
async def closing():
    yield
    await aclose_clients()


@pytest.fixture
def server():
    with LocalServer() as s:
        yield s


@pytest.fixture
def resolver():
    """A resolver hook: names map to chosen addresses; every lookup is counted."""

    class Resolver:
        def __init__(self) -> None:
            self.answers: dict[str, list[list[str]]] = {}
            self.calls: list[str] = []

        def map(self, name: str, *answers: list[str]) -> None:
            self.answers[name] = list(answers)

        async def __call__(self, host: str, port: int) -> list[str]:
            self.calls.append(host)
            answers = self.answers.get(host)
            if answers is None:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return answers.pop(0) if len(answers) > 1 else answers[0]

    hook = Resolver()
    previous = guard.set_resolver(hook)
    yield hook
    guard.set_resolver(previous)


BLOCKED = [
    # (url, host in the error, rule)
    ("http://127.0.0.1:8080/a", "127.0.0.1", "loopback 127.0.0.0/8"),
    ("http://10.1.2.3/", "10.1.2.3", "private (RFC 1918) 10.0.0.0/8"),
    ("http://172.16.0.9/", "172.16.0.9", "private (RFC 1918) 172.16.0.0/12"),
    ("http://192.168.1.1/", "192.168.1.1", "private (RFC 1918) 192.168.0.0/16"),
    ("http://169.254.10.20/", "169.254.10.20", "link-local 169.254.0.0/16"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "link-local (cloud metadata) 169.254.169.254/32"),
    ("http://[fd00:ec2::254]/latest", "fd00:ec2::254", "cloud metadata (AWS IMDS IPv6) fd00:ec2::254/128"),
    ("http://[::1]:8080/", "::1", "loopback ::1/128"),
    ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1", "loopback via IPv4-mapped 127.0.0.1"),
    ("http://[::ffff:169.254.169.254]/", "::ffff:a9fe:a9fe", "link-local (cloud metadata) via IPv4-mapped 169.254.169.254"),
    ("http://2130706433/", "127.0.0.1", "loopback 127.0.0.0/8"),
    ("http://0177.0.0.1/", "127.0.0.1", "loopback 127.0.0.0/8"),
    ("http://0x7f.0.0.1/", "127.0.0.1", "loopback 127.0.0.0/8"),
    ("http://127.1/", "127.0.0.1", "loopback 127.0.0.0/8"),
    ("http://0/", "0.0.0.0", "unspecified 0.0.0.0/32"),
    ("http://localhost:8000/", "localhost", "loopback name"),
    ("http://LOCALHOST./", "localhost", "loopback name"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata.google.internal", "cloud metadata name"),
]


@pytest.mark.parametrize(("url", "host", "rule"), BLOCKED)
async def test_internal_addresses_are_blocked_naming_host_and_rule(url, host, rule, closing):
    audits = Audits()
    with automate(), pytest.raises(guard.SsrfDenied) as info:
        await guard.check_target(url, make_ctx(audits), "GET x")
    message = str(info.value)
    assert message.startswith("GET x: blocked by the SSRF policy: ")
    assert host in message and rule in message
    assert "POLICY.ssrf_allowlist" in message
    assert (info.value.host, info.value.rule) == (host, rule)
    assert len(audits) == 1
    action, resource, details = audits[0]
    assert (action, resource) == ("policy.ssrf_denied", f"host:{host}")
    assert details["url_host"] == host and details["rule"] == rule
    assert details["address"] == (None if "name" in rule else host)


@pytest.mark.parametrize(
    ("url", "entry"),
    [
        ("http://10.1.2.3/", "10.0.0.0/8"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://[fd00:ec2::254]/latest", "fd00:ec2::/64"),
        ("http://[::1]/", "::1/128"),
        ("http://[::ffff:127.0.0.1]/", "127.0.0.0/8"),  # an IPv4 entry covers the mapped form
        ("http://2130706433/", "127.0.0.1"),
        ("http://localhost/", "localhost"),
        ("http://metadata.google.internal/", "metadata.google.internal"),
    ],
)
async def test_each_is_allowed_once_trusted_by_the_allowlist(url, entry, resolver, closing):
    resolver.map("localhost", ["127.0.0.1"])
    resolver.map("metadata.google.internal", ["169.254.169.254"])
    audits = Audits()
    with automate(allow=[entry]):
        target = await guard.check_target(url, make_ctx(audits), "GET x")
    assert target.addresses and audits == []


async def test_allow_ssrf_relaxes_private_ranges_but_not_metadata(closing):
    with automate(allow_ssrf=True):
        target = await guard.check_target("http://10.1.2.3/", make_ctx(), "GET x")
        assert target.addresses == ("10.1.2.3",)
        with pytest.raises(guard.SsrfDenied, match="cloud metadata"):
            await guard.check_target("http://169.254.169.254/", make_ctx(), "GET x")


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("file:///etc/passwd", "scheme 'file' not allowed"),
        ("gopher://127.0.0.1:70/_GET%20/", "scheme 'gopher' not allowed"),
        ("ftp://example.com/x", "scheme 'ftp' not allowed"),
        ("//example.com/x", "no scheme"),
    ],
)
async def test_other_schemes_are_refused(url, rule, closing):
    audits = Audits()
    with automate(allow=["127.0.0.0/8", "example.com"]), pytest.raises(guard.SsrfDenied) as info:
        await guard.check_target(url, make_ctx(audits), "GET x")
    assert rule in str(info.value) and "only absolute http:// and https:// URLs" in str(info.value)
    assert audits[0][0] == "policy.ssrf_denied" and audits[0][2]["rule"] == rule


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://user:pw@example.com/", "userinfo"),
        ("http://exa mple.com/", "contains ' '"),
        ("http://example.com:99999/", "invalid port"),
        ("http://1.2.3.4.5/", "not a valid IPv4 address"),
    ],
)
async def test_malformed_urls_fail_without_quoting_the_url(url, reason, closing):
    with automate(), pytest.raises(PermanentStepError) as info:
        await guard.check_target(url + "?token=s3cr3t", make_ctx(), "GET x")
    assert reason in str(info.value)
    assert "s3cr3t" not in str(info.value) and "pw@" not in str(info.value)


async def test_a_name_is_checked_on_every_address_it_resolves_to(resolver, closing):
    resolver.map("internal.test", ["127.0.0.1"])
    resolver.map("mixed.test", ["93.184.215.14", "10.0.0.7"])  # one public, one private: refused
    audits = Audits()
    with automate():
        with pytest.raises(guard.SsrfDenied) as info:
            await guard.check_target("http://internal.test/x", make_ctx(audits), "GET x")
        assert "internal.test (127.0.0.1) is loopback 127.0.0.0/8" in str(info.value)
        with pytest.raises(guard.SsrfDenied) as info:
            await guard.check_target("http://mixed.test/x", make_ctx(audits), "GET x")
        assert "mixed.test (10.0.0.7) is private (RFC 1918) 10.0.0.0/8" in str(info.value)
    assert [d["address"] for _, _, d in audits] == ["127.0.0.1", "10.0.0.7"]
    assert [d["url_host"] for _, _, d in audits] == ["internal.test", "mixed.test"]


async def test_the_real_localhost_resolves_and_is_blocked_unless_allowlisted(server, closing):
    with automate():
        with pytest.raises(PermanentStepError, match="localhost is a loopback name"):
            await HTTP.run({"url": server.url("/x", host="localhost")}, make_ctx())
    with automate(allow=["localhost"]):  # the system resolver, then the pinned connect
        out = await HTTP.run({"url": server.url("/x", host="localhost")}, make_ctx())
    assert out["status"] == 200 and len(server.received("/x")) == 1


async def test_dns_failures_are_named(resolver, closing):
    with automate(), pytest.raises(PermanentStepError, match="the host nowhere.test does not exist"):
        await guard.check_target("http://nowhere.test/", make_ctx(), "GET x")


# -- against the local server: blocked spellings reach it only when trusted ------------------------------

SPELLINGS = ["http://127.0.0.1:{port}/s", "http://2130706433:{port}/s", "http://0177.0.0.1:{port}/s",
             "http://0x7f.0.0.1:{port}/s", "http://[::ffff:127.0.0.1]:{port}/s"]


@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_loopback_spellings_reach_the_server_only_when_allowlisted(spelling, server, closing):
    url = spelling.format(port=server.port)
    audits = Audits()
    with automate(), pytest.raises(guard.SsrfDenied, match="loopback"):
        await HTTP.run({"url": url}, make_ctx(audits))
    assert server.requests == [] and audits.actions() == ["policy.ssrf_denied"]
    with automate(allow=["127.0.0.1/32"]):
        out = await HTTP.run({"url": url}, make_ctx())
    assert out["status"] == 200 and len(server.requests) == 1


# -- redirects ------------------------------------------------------------------------------------------


@pytest.fixture
def private_server():
    with LocalServer(host="127.0.0.2") as s:
        yield s


async def test_a_redirect_to_a_private_address_is_blocked_at_the_hop(server, private_server, closing):
    server.route("/go", Reply(302, headers={"Location": private_server.url("/inside")}))
    audits = Audits()
    with automate(allow=["127.0.0.1/32"]), pytest.raises(guard.SsrfDenied) as info:
        await HTTP.run({"url": server.url("/go")}, make_ctx(audits))
    assert f"GET 127.0.0.2:{private_server.port}/inside: blocked by the SSRF policy" in str(info.value)
    assert "127.0.0.2 is loopback 127.0.0.0/8" in str(info.value)
    assert private_server.requests == []  # never connected
    assert audits[0][2] == {"run_id": "run-1", "step": "call", "url_host": "127.0.0.2", "address": "127.0.0.2",
                            "rule": "loopback 127.0.0.0/8"}
    with automate(allow=["127.0.0.1/32", "127.0.0.2/32"]):  # trusted: followed
        out = await HTTP.run({"url": server.url("/go")}, make_ctx())
    assert out["json"]["path"] == "/inside" and len(private_server.requests) == 1


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("http://[::1]:{port}/x", "::1 is loopback ::1/128"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is link-local (cloud metadata)"),
        ("http://2130706433:{port}/x", "127.0.0.1 is loopback"),
        ("file:///etc/passwd", "scheme 'file' not allowed"),
        ("gopher://127.0.0.1:{port}/", "scheme 'gopher' not allowed"),
    ],
)
async def test_redirects_are_checked_like_the_first_url(location, expected, closing):
    with LocalServer(host="127.0.0.3") as trusted:
        trusted.route("/go", Reply(307, headers={"Location": location.format(port=trusted.port)}))
        with automate(allow=["127.0.0.3"]), pytest.raises(guard.SsrfDenied) as info:
            await HTTP.run({"url": trusted.url("/go")}, make_ctx())
    assert expected in str(info.value)
    assert [r.path for r in trusted.requests] == ["/go"]


async def test_a_cross_origin_redirect_drops_credentials(server, private_server, closing):
    server.route("/away", Reply(302, headers={"Location": private_server.url("/landed")}))
    server.route("/here", Reply(302, headers={"Location": "/landed"}))
    headers = {"Authorization": "Bearer abc", "Cookie": "sid=1", "X-Trace": "kept"}
    with automate(allow=["127.0.0.1", "127.0.0.2"]):
        away = await HTTP.run({"url": server.url("/away"), "headers": headers}, make_ctx())
        here = await HTTP.run({"url": server.url("/here"), "headers": headers}, make_ctx())
    assert "authorization" not in away["json"]["headers"] and "cookie" not in away["json"]["headers"]
    assert away["json"]["headers"]["x-trace"] == "kept"
    assert here["json"]["headers"]["authorization"] == "Bearer abc"  # same origin: kept


# -- pinning: the checked address is the one connected to ------------------------------------------------


async def test_a_name_is_resolved_once_and_the_checked_address_is_connected(server, resolver, closing):
    """DNS rebinding: the first answer is checked and used; a second lookup would answer the metadata
    address. The request reaches the server by its name (Host header), the resolver ran once per request,
    and the pool's backend connected to the checked 127.0.0.1."""
    resolver.map("rebind.test", ["127.0.0.1"], ["169.254.169.254"])
    with automate(allow=["127.0.0.1/32"]):
        out = await HTTP.run({"url": server.url("/pin", host="rebind.test")}, make_ctx())
        assert out["json"]["headers"]["host"] == f"rebind.test:{server.port}"
        assert resolver.calls == ["rebind.test"]
        backend = client.backend_of(client.shared_client())
        assert backend.connects[-1] == ("rebind.test", "127.0.0.1", server.port)
        # the next request resolves again and gets the rebound answer: refused before any connect
        with pytest.raises(guard.SsrfDenied, match=r"rebind.test \(169.254.169.254\) is link-local"):
            await HTTP.run({"url": server.url("/pin", host="rebind.test")}, make_ctx())
    assert resolver.calls == ["rebind.test", "rebind.test"] and len(server.requests) == 1


async def test_the_backend_refuses_a_connection_nobody_checked(server, closing):
    backend = client.PinnedBackend()
    with pytest.raises(UnsafeAddressError, match="did not check it"):
        await backend.connect_tcp("127.0.0.1", server.port)
    target = guard.Target(guard.parse_url_host(server.url("/")), ("127.0.0.1",))
    with client.pinned(target):
        with pytest.raises(UnsafeAddressError):  # pinned for another host or port: refused too
            await backend.connect_tcp("other.test", server.port)
        stream = await backend.connect_tcp("127.0.0.1", server.port)
        await stream.aclose()
    with pytest.raises(UnsafeAddressError):
        await backend.connect_unix_socket("/tmp/x.sock")


async def test_the_shared_client_uses_the_pinned_backend(closing):
    with automate():
        shared = client.shared_client()
        assert shared is client.shared_client()  # one per loop
        pool = shared._transport._pool  # type: ignore[attr-defined]
        assert isinstance(pool, httpcore.AsyncConnectionPool)
        assert pool._network_backend is client.backend_of(shared)


async def test_tls_is_verified_against_the_host_name_while_connecting_to_the_pinned_address(
    tmp_path, resolver, closing
):
    tls = TlsFiles.issue(tmp_path, "api.automate.test")
    resolver.map("api.automate.test", ["127.0.0.1"])
    resolver.map("other.automate.test", ["127.0.0.1"])
    with LocalServer(tls=tls) as https, automate(allow=["127.0.0.1"], ca_bundle=str(tls.ca_pem)):
        out = await HTTP.run({"url": https.url("/secure", host="api.automate.test")}, make_ctx())
        assert out["status"] == 200 and out["json"]["path"] == "/secure"
        with pytest.raises(PermanentStepError) as info:  # same address, a name the certificate lacks
            await HTTP.run({"url": https.url("/secure", host="other.automate.test")}, make_ctx())
        assert "TLS certificate verification failed for other.automate.test" in str(info.value)
    with LocalServer(tls=tls) as https, automate(allow=["127.0.0.1"]):  # the CA not trusted: refused
        with pytest.raises(PermanentStepError, match="TLS certificate verification failed"):
            await HTTP.run({"url": https.url("/secure", host="api.automate.test")}, make_ctx())


async def test_a_missing_ca_bundle_is_named(closing):
    with automate(ca_bundle="tests/data/no-such-ca.pem"), pytest.raises(PermanentStepError) as info:
        await HTTP.run({"url": "http://127.0.0.1:9/"}, make_ctx())
    assert "DJANGO_AUTOMATE.HTTP.ca_bundle: cannot load 'tests/data/no-such-ca.pem'" in str(info.value)


# -- end to end, through the worker ---------------------------------------------------------------------

pytestmark_db = pytest.mark.django_db(transaction=True)


@pytestmark_db
@pytest.mark.parametrize("spelling", ["http://127.0.0.1:{port}/s?key=q-secret", "http://0x7f.0.0.1:{port}/s"])
def test_a_blocked_call_fails_its_step_and_is_audited(spelling, pg_conninfo, server):
    url = spelling.format(port=server.port)
    publish("ssrf", trigger_spec={"event": "go"}, steps=[{"id": "call", "type": "http", "config": {"url": url}}])
    emit_event("go", {})
    with automate():
        drain(worker(pg_conninfo))
    step = StepRun.objects.get()
    assert step.status == "FAILED" and step.attempt == 1  # permanent: not retried
    assert step.error.startswith(f"SsrfDenied: GET {url.split('?')[0].removeprefix('http://')}: ")
    assert "blocked by the SSRF policy: 127.0.0.1 is loopback 127.0.0.0/8" in step.error
    assert "q-secret" not in step.error
    entry = AuditLogEntry.objects.get(action="policy.ssrf_denied")
    assert entry.resource == "host:127.0.0.1" and entry.actor == "automate-worker"
    assert entry.details == {"run_id": str(step.run_id), "step": "call", "url_host": "127.0.0.1",
                             "address": "127.0.0.1", "rule": "loopback 127.0.0.0/8"}
    assert server.requests == []


@pytestmark_db
def test_a_redirect_to_a_private_host_fails_the_step_end_to_end(pg_conninfo, server, private_server):
    server.route("/go", Reply(301, headers={"Location": private_server.url("/inside")}))
    publish("hop", trigger_spec={"event": "go"}, steps=[
        {"id": "call", "type": "http", "config": {"url": server.url("/go")}},
    ])
    emit_event("go", {})
    with automate(allow=["127.0.0.1/32"]):
        drain(worker(pg_conninfo))
    step = StepRun.objects.get()
    assert step.status == "FAILED" and "127.0.0.2 is loopback 127.0.0.0/8" in step.error
    assert AuditLogEntry.objects.get(action="policy.ssrf_denied").details["url_host"] == "127.0.0.2"
    assert [r.path for r in server.requests] == ["/go"] and private_server.requests == []

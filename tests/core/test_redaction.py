"""Redaction: sensitive keys, value patterns, run-scoped secrets, structure (copies, cycles, depth)."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import decimal
import enum
import json
import sys
import urllib.parse
import uuid
from collections import OrderedDict
from types import MappingProxyType
from typing import Any

import orjson
import pytest

from automate.core.redaction import (
    CYCLE,
    REDACTED,
    Redactor,
    default_redactor,
    is_sensitive_key,
    normalize_key,
    redact,
)

# -- sensitive keys -----------------------------------------------------------------------------------------

SENSITIVE_KEYS = [
    "password", "Password", "PASSWORD", "passwd", "pwd", "db_password", "dbPassword", "DB-PASSWORD",
    "passphrase", "pass",
    "secret", "client_secret", "clientSecret", "stripeSecretKey", "AWS_SECRET_ACCESS_KEY", "webhook-secret",
    "token", "access_token", "accessToken", "refresh_token", "RefreshToken", "github_token", "id_token",
    "csrftoken", "X-CSRF-Token", "oauth_token",
    "api_key", "apiKey", "ApiKey", "X-Api-Key", "x-api-key", "API-KEY", "API_KEY", "apikey",
    "authorization", "Authorization", "Proxy-Authorization", "auth", "Auth", "x-auth",
    "cookie", "Cookie", "set-cookie", "Set-Cookie", "cookies",
    "private_key", "privateKey", "PRIVATE-KEY", "ssh_private_key", "privkey",
    "access_key", "aws_access_key_id", "signing_key", "encryption_key",
    "session", "sessionid", "session_id", "sessionId", "session_token", "session_key", "PHPSESSID",
    "credential", "credentials", "google_credentials",
    "jwt", "bearer", "signature", "X-Hub-Signature-256", "sig", "otp",
]  # fmt: skip

INNOCENT_KEYS = [
    "author", "authority", "authenticated", "authors", "auth_method",
    "passenger", "compass", "bypass", "passage",
    "token_count", "tokenCount", "max_tokens", "prompt_tokens", "completion_tokens", "total_tokens",
    "input_tokens", "output_tokens", "token_type", "tokenizer", "token_usage", "access_token_expires_at",
    "token_expires_in",
    "secret_name", "secretRef", "secret_path",
    "key", "primary_key", "keyboard", "idempotency_key", "monkey",
    "session_count", "session_duration",
    "email", "username", "user_id", "description", "amount", "currency", "id", "",
]  # fmt: skip


@pytest.mark.parametrize("key", SENSITIVE_KEYS)
def test_sensitive_key_value_is_redacted_whatever_its_type(key: str) -> None:
    for value in ("hunter2-value", 12345, None, ["a", "b"], {"nested": "x"}, b"raw"):
        assert redact({key: value}) == {key: REDACTED}, (key, value)
    assert is_sensitive_key(key)


@pytest.mark.parametrize("key", INNOCENT_KEYS)
def test_innocent_key_is_kept(key: str) -> None:
    assert redact({key: "kept-value"}) == {key: "kept-value"}
    assert not is_sensitive_key(key)


def test_normalize_key_across_naming_styles() -> None:
    for style in ("api_key", "apiKey", "X-Api-Key", "API-KEY", "api.key", "Api Key"):
        assert normalize_key(style).endswith("apikey")
    assert normalize_key("X-Api-Key") == "xapikey"


def test_extra_keys_are_normalised_and_matched_as_substrings() -> None:
    r = Redactor(extra_keys=["SSN", "card-number"])
    assert r.redact({"customer_ssn": "123-45-6789", "cardNumber": "4242", "name": "Jane"}) == {
        "customer_ssn": REDACTED,
        "cardNumber": REDACTED,
        "name": "Jane",
    }
    assert r.redact("ssn=123-45-6789 name=jane") == f"ssn={REDACTED} name=jane"
    # the default redactor knows nothing of them
    assert redact({"customer_ssn": "123-45-6789"}) == {"customer_ssn": "123-45-6789"}


def test_extra_key_overrides_an_exemption() -> None:
    r = Redactor(extra_keys=["max_tokens"])
    assert r.redact({"max_tokens": 10}) == {"max_tokens": REDACTED}


def test_header_pairs_and_name_value_dicts() -> None:
    asgi_headers = [(b"host", b"example.com"), (b"authorization", b"Basic Zm9vOmJhcg=="), (b"cookie", b"s=1")]
    assert redact(asgi_headers) == [(b"host", b"example.com"), (b"authorization", REDACTED), (b"cookie", REDACTED)]
    k8s_env = [{"name": "DB_PASSWORD", "value": "pg-secret-1"}, {"name": "LOG_LEVEL", "value": "info"}]
    assert redact(k8s_env) == [{"name": "DB_PASSWORD", "value": REDACTED}, {"name": "LOG_LEVEL", "value": "info"}]
    aws_tags = [{"Key": "ApiToken", "Value": "t-123456"}, {"Key": "team", "Value": "core"}]
    assert redact(aws_tags) == [{"Key": "ApiToken", "Value": REDACTED}, {"Key": "team", "Value": "core"}]
    # a 2-list is data, not a pair (a list of words must survive)
    assert redact(["secret", "sauce"]) == ["secret", "sauce"]


# -- values inside strings ----------------------------------------------------------------------------------

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\nMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3S"

# (text, the sensitive span that must vanish, a part of the context that must stay)
PATTERN_CASES = [
    ("Authorization: Bearer " + JWT, JWT, "Authorization"),
    ("curl -H 'Authorization: Bearer abc123def456ghi789' https://api", "abc123def456ghi789", "curl -H"),
    ("use bearer tok_9f8e7d6c5b4a3 for it", "tok_9f8e7d6c5b4a3", "for it"),
    ("Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA==", "Basic"),
    ("key sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789 set", "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "set"),
    ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz-0123", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz-0123", ""),
    ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc ok", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe"),
    ("sk_test_51HqLyjWDarjtT1zdp7dcXYZ", "sk_test_51HqLyjWDarjtT1zdp7dcXYZ", ""),
    ("restricted rk_live_51HqLyjWDarjtT1zdp7dc", "rk_live_51HqLyjWDarjtT1zdp7dc", "restricted"),
    ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", ""),
    ("slack xoxb-2048-4096-abcdEFGHijklMNOPqrstUVWX", "xoxb-2048-4096-abcdEFGHijklMNOPqrstUVWX", "slack"),
    ("xoxp-1234567890-1234567890-abcdef", "xoxp-1234567890-1234567890-abcdef", ""),
    ("xapp-1-A0123456789-abcdef0123", "xapp-1-A0123456789-abcdef0123", ""),
    ("gh ghp_16C7e42F292c6912E7710c838347Ae178B4a done", "ghp_16C7e42F292c6912E7710c838347Ae178B4a", "done"),
    ("github_pat_11ABCDEFG0abcdefghijkl_mnopqrstuvwxyz0123456789ABCDEFGH", "github_pat_11ABCDEFG0abcdefghijkl", ""),
    ("glpat-xxxxXXXXxxxxXXXXxxxx", "glpat-xxxxXXXXxxxxXXXXxxxx", ""),
    ("maps AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI", "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI", "maps"),
    ("aws AKIAIOSFODNN7EXAMPLE region", "AKIAIOSFODNN7EXAMPLE", "region"),
    ("sts ASIAY34FZKBOKMUTVV7A", "ASIAY34FZKBOKMUTVV7A", "sts"),
    ("id_token " + JWT + " end", JWT, "end"),
    (
        f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----\nafter",
        PEM_BODY,
        "after",
    ),
    (f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}\n-----END OPENSSH PRIVATE KEY-----", PEM_BODY, "BEGIN"),
    (f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n{PEM_BODY}\n-----END PGP PRIVATE KEY BLOCK-----", PEM_BODY, "PGP"),
    (f"truncated: -----BEGIN EC PRIVATE KEY-----\n{PEM_BODY}", PEM_BODY, "truncated"),
    ("postgres://app:s3cr3t-pg-pw@db.internal:5432/app", "s3cr3t-pg-pw", "db.internal:5432/app"),
    ("redis://:r3dis-pw-x@cache:6379/0", "r3dis-pw-x", "cache:6379"),
    ("https://user:p@ss:w0rd@example.com/path", "p@ss:w0rd", "example.com/path"),
    ("https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX", "T00000000/B00000000", "hooks"),
    ("GET /cb?code=abc&token=t0k3n-value-1&api_key=ak-v4lue-2&page=2", "t0k3n-value-1", "page=2"),
    ("GET /cb?code=abc&token=t0k3n-value-1&api_key=ak-v4lue-2&page=2", "ak-v4lue-2", "code=abc"),
    (
        "https://s3.amazonaws.com/b/o?X-Amz-Credential=AKID%2F2024&X-Amz-Signature=fe5f80f77d5fa3be",
        "fe5f80f77d5fa3be",
        "s3",
    ),
    ("connecting with password=hunter2-xyz user=bob", "hunter2-xyz", "user=bob"),
    ("db_password: pg-pw-4242 host: db", "pg-pw-4242", "host: db"),
    ('{"client_secret": "cs-0a1b2c3d", "client_id": "app-1"}', "cs-0a1b2c3d", '"client_id": "app-1"'),
    ("{'apiKey': 'ak-9z8y7x', 'region': 'eu'}", "ak-9z8y7x", "'region': 'eu'"),
    ('{\\"password\\": \\"esc-pw-77\\"}', "esc-pw-77", "password"),
    ("password='unterminated-pw-1", "unterminated-pw-1", "password"),
    ("Cookie: sessionid=abc123def; csrftoken=zzz999\nHost: example.com", "abc123def", "Host: example.com"),
    ("Cookie: sessionid=abc123def; csrftoken=zzz999\nHost: example.com", "zzz999", "Host"),
    ("Set-Cookie: id=a3fWa77; Expires=Wed, 21 Oct 2025 07:28:00 GMT", "a3fWa77", "Set-Cookie"),
    ("X-Api-Key=key-abcdef-123 next", "key-abcdef-123", "next"),
    ("secret_note: call me Bearer zyx987wvu654 later", "zyx987wvu654", "later"),
]


@pytest.mark.parametrize(("text", "sensitive", "context"), PATTERN_CASES)
def test_value_patterns_replace_only_the_sensitive_span(text: str, sensitive: str, context: str) -> None:
    out = redact(text)
    assert sensitive not in out
    assert REDACTED in out
    assert context in out
    # the same inside a structure, under an innocent key, and as bytes
    assert sensitive not in redact({"note": text})["note"]
    assert sensitive.encode() not in redact(text.encode())


KEPT_TEXT = [
    "Basic authentication is supported",
    "Bearer tokens are described in RFC 6750",
    "max_tokens=256 temperature=0.2",
    "the token endpoint is /oauth/token",
    "https://example.com:8443/path?page=2&sort=asc",
    "risk-assessment-document-v2 and task-queue-name",
    "2024-05-01T10:00:00Z",
    "5f0c7d2e-9a41-4a7b-8b5a-1c2d3e4f5a6b",
    "mailto:jane@example.com",
    "author: Jane Doe",
    "signal=3 design=flat",
    "a high throughput through the night",
    "keyboard: qwerty",
    "uses $secret:STRIPE_KEY and {{ secrets.x }}",
    "",
    "ab",
]


@pytest.mark.parametrize("text", KEPT_TEXT)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_several_findings_in_one_string() -> None:
    text = f"a=1 password=pw-one-1 b=2 Bearer {JWT} c=3 https://u:pw-two-2@h/x"
    out = redact(text)
    for gone in ("pw-one-1", JWT, "pw-two-2"):
        assert gone not in out
    assert out.startswith("a=1 password=") and "b=2" in out and "c=3" in out and "@h/x" in out


def test_extra_patterns_replace_match_or_secret_group() -> None:
    r = Redactor(extra_patterns=[r"ACME-\d{6}", r"pin (?P<secret>\d{4,})"])
    assert r.redact("order ACME-123456 paid, pin 98765 ok") == f"order {REDACTED} paid, pin {REDACTED} ok"


# -- run scope: literal secrets -----------------------------------------------------------------------------

SECRET_A = "correct-horse-battery-staple"
SECRET_B = "pg-pass-7f3a9c2e11"


def test_run_scope_scrubs_values_under_innocent_keys_in_substrings_keys_and_bytes() -> None:
    r = Redactor().with_secrets([SECRET_A, SECRET_B])
    data = {
        "note": SECRET_A,
        "log": f"connecting to db with {SECRET_B} now",
        SECRET_B: "as a key",
        f"prefix-{SECRET_A}": 1,
        "list": [SECRET_A, (SECRET_B, 2), {SECRET_A}],
        "raw": f"x{SECRET_A}y".encode(),
    }
    out = r.redact(data)
    dumped = repr(out)
    assert SECRET_A not in dumped and SECRET_B not in dumped
    assert out["log"] == f"connecting to db with {REDACTED} now"
    assert out["note"] == REDACTED
    assert out["raw"] == f"x{REDACTED}y".encode()
    assert "prefix-" + REDACTED in out
    assert out["list"][1] == (REDACTED, 2)


def test_overlapping_secrets_leave_no_fragment() -> None:
    r = Redactor().with_secrets(["abcdef12", "ef12ghij"])
    out = r.redact("xx abcdef12ghij yy")
    assert out == f"xx {REDACTED} yy"
    # a secret inside a longer one: the longest wins, nothing remains
    r2 = Redactor().with_secrets(["token-1234", "xtoken-1234y"])
    assert r2.redact("a xtoken-1234y b token-1234") == f"a {REDACTED} b {REDACTED}"


def test_encoded_forms_of_a_secret_are_scrubbed() -> None:
    secret = 'pa"ss/wo rd\\1+'
    r = Redactor().with_secrets([secret])
    as_json = json.dumps({"x": f"before {secret} after"})
    assert json.loads(r.redact(as_json))["x"] == f"before {REDACTED} after"
    quoted = "https://h/?q=" + urllib.parse.quote(secret, safe="")
    assert urllib.parse.quote(secret, safe="") not in r.redact(quoted)
    b64 = base64.b64encode(secret.encode()).decode()
    assert b64.rstrip("=") not in r.redact(f"blob {b64}")


def test_short_values_are_not_scrubbed_as_literals() -> None:
    r = Redactor().with_secrets(["abc", "abcd"])
    assert r.secret_count == 1
    assert r.redact("abc abd abcd") == f"abc abd {REDACTED}"
    strict = Redactor(min_secret_length=8).with_secrets(["abcd", "abcdefgh"])
    assert strict.redact("abcd abcdefgh") == f"abcd {REDACTED}"
    with pytest.raises(ValueError, match="min_secret_length"):
        Redactor(min_secret_length=0)


def test_with_secrets_returns_a_new_redactor_and_keeps_the_rules() -> None:
    base = Redactor(extra_keys=["ssn"])
    scoped = base.with_secrets([SECRET_A])
    assert scoped is not base and base.secret_count == 0 and scoped.secret_count == 1
    assert scoped.with_secrets([SECRET_A]) is scoped
    assert scoped.redact({"ssn": 1, "x": SECRET_A}) == {"ssn": REDACTED, "x": REDACTED}
    assert base.redact({"x": SECRET_A}) == {"x": SECRET_A}
    with pytest.raises(TypeError):
        base.with_secrets(SECRET_A)  # a string is not a list of secrets


def test_strings_the_base_found_clean_are_still_scrubbed_of_run_secrets() -> None:
    base = Redactor()
    text = f"hello {SECRET_B}"
    assert base.redact(text) == text  # now remembered as clean by the base (and its derived redactors)
    scoped = base.with_secrets([SECRET_B])
    assert scoped.redact(text) == f"hello {REDACTED}"
    assert scoped.redact({text: text}) == {f"hello {REDACTED}": f"hello {REDACTED}"}
    assert base.redact(text) == text


def test_redactor_is_immutable_and_its_repr_shows_no_secret() -> None:
    r = Redactor().with_secrets([SECRET_A])
    with pytest.raises(AttributeError):
        r._secrets = frozenset()
    assert SECRET_A not in repr(r)
    assert "secrets=1" in repr(r)


def test_keys_that_redact_to_the_same_text_do_not_overwrite_each_other() -> None:
    r = Redactor().with_secrets(["alpha-value-1", "bravo-value-2"])
    out = r.redact({"alpha-value-1": 1, "bravo-value-2": 2, "plain": 3})
    assert sorted(out.values()) == [1, 2, 3]
    assert set(out) == {REDACTED, f"{REDACTED}#2", "plain"}


# -- structure ----------------------------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"


class Thing:
    def __str__(self) -> str:
        return f"Thing with password=thing-pw-1 and {SECRET_A}"


class Broken:
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_input_is_never_mutated() -> None:
    inner = {"password": "p1-secret", "ok": [1, 2, {"token": "t"}]}
    data = {
        "a": inner,
        "b": [inner, ("x", {"api_key": "k"}), {"s1", "s2"}, frozenset({"f"})],
        "c": b"Bearer abc123def456",
        "d": bytearray(b"x"),
        SECRET_A: SECRET_A,
    }
    before = copy.deepcopy(data)
    out = Redactor().with_secrets([SECRET_A]).redact(data)
    assert data == before
    assert data["a"] is inner and inner["password"] == "p1-secret"
    assert out is not data and out["a"] is not inner


def test_types_are_preserved() -> None:
    out = redact(
        {
            "t": ("a", 1),
            "s": {"a", "b"},
            "f": frozenset({"a"}),
            "b": b"bytes",
            "ba": bytearray(b"ba"),
            "od": OrderedDict(x=1),
            "mp": MappingProxyType({"token": "t"}),
            "n": None,
            "bool": True,
            "i": 10**30,
            "fl": 1.5,
            "dec": decimal.Decimal("1.10"),
            "dt": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
            "d": dt.date(2024, 1, 1),
            "u": uuid.UUID(int=1),
            "e": Color.RED,
        }
    )
    assert out["t"] == ("a", 1) and type(out["t"]) is tuple
    assert out["s"] == {"a", "b"} and type(out["s"]) is set
    assert out["f"] == frozenset({"a"}) and type(out["f"]) is frozenset
    assert out["b"] == b"bytes" and out["ba"] == b"ba" and type(out["ba"]) is bytes
    assert out["od"] == {"x": 1} and type(out["od"]) is dict
    assert out["mp"] == {"token": REDACTED}
    assert out["n"] is None and out["bool"] is True and out["i"] == 10**30 and out["fl"] == 1.5
    assert out["dec"] == decimal.Decimal("1.10") and out["u"] == uuid.UUID(int=1) and out["e"] is Color.RED
    assert out["dt"] == dt.datetime(2024, 1, 1, tzinfo=dt.UTC) and out["d"] == dt.date(2024, 1, 1)


def test_undecodable_bytes_survive_unchanged() -> None:
    raw = b"\xff\xfe token=abc12345 \x80"
    out = redact(raw)
    assert out == b"\xff\xfe token=" + REDACTED.encode() + b" \x80"
    assert redact(b"\xff\xfe\x80 plain") == b"\xff\xfe\x80 plain"


def test_unknown_objects_become_redacted_strings() -> None:
    out = Redactor().with_secrets([SECRET_A]).redact({"obj": Thing(), "broken": Broken()})
    assert out["obj"] == f"Thing with password={REDACTED} and {REDACTED}"
    assert out["broken"] == "[UNPRINTABLE Broken]"


def test_top_level_scalars() -> None:
    assert redact("password=hunter22") == f"password={REDACTED}"
    assert redact(42) == 42 and redact(None) is None
    assert redact(("authorization", "Bearer x")) == ("authorization", REDACTED)
    assert default_redactor("token=abcdefgh") == f"token={REDACTED}"


def test_cycles_are_cut_with_a_marker() -> None:
    a: list = [1]
    a.append(a)
    assert redact(a) == [1, CYCLE]

    d: dict = {"name": "x"}
    d["self"] = d
    d["children"] = [{"parent": d}]
    out = redact(d)
    assert out == {"name": "x", "self": CYCLE, "children": [{"parent": CYCLE}]}

    lst: list = []
    tup = (lst, "t")
    lst.append(tup)
    assert redact(tup) == ([CYCLE], "t")


def test_shared_containers_are_copied_once_not_marked_as_cycles() -> None:
    shared = {"password": "x", "v": 1}
    out = redact([shared, {"again": shared}, shared])
    assert out[0] == {"password": REDACTED, "v": 1}
    assert out[0] is out[1]["again"] is out[2]


def _depth(value: Any, key: Any = 0) -> int:
    """How many lists (key 0) or dicts (a str key) are nested along ``key``."""
    depth = 0
    while (isinstance(value, list) and value and key == 0) or (isinstance(value, dict) and key in value):
        value = value[key]
        depth += 1
    return depth


def test_deep_nesting_100k_is_redacted_in_full_without_recursion_error() -> None:
    bottom = {"password": "deep-pw", "note": f"x {SECRET_A} y"}
    data: object = bottom
    for _ in range(100_000):
        data = [data]
    out = Redactor().with_secrets([SECRET_A]).redact(data)
    node = out
    for _ in range(100_000):
        assert isinstance(node, list) and len(node) == 1
        node = node[0]
    assert node == {"password": REDACTED, "note": f"x {REDACTED} y"}

    nested: dict = {"leaf": "token=abcdef123"}
    for _ in range(100_000):
        nested = {"k": nested}
    out = redact(nested)
    assert _depth(out, "k") == 100_000
    node = out
    while "k" in node:
        node = node["k"]
    assert node == {"leaf": f"token={REDACTED}"}


def test_a_cycle_across_the_recursion_and_iterative_parts() -> None:
    root: dict = {"name": "root"}
    node = root
    for i in range(200):
        child = {"i": i, "shared": root if i == 150 else None}
        node["child"] = child
        node = child
    node["back"] = root
    out = redact(root)
    node = out
    for _ in range(200):
        node = node["child"]
    assert node["back"] == CYCLE
    walk = out
    for _ in range(151):
        walk = walk["child"]
    assert walk["shared"] == CYCLE


def test_works_with_almost_no_stack_left(monkeypatch: pytest.MonkeyPatch) -> None:
    data: object = {"token": "abc", "v": "Bearer abc123def456"}
    for _ in range(300):
        data = [data]
    restarted = []
    walk = Redactor._walk

    def spy(self: Redactor, root: object, state: dict) -> object:
        if root is data:
            restarted.append(True)
        return walk(self, root, state)

    monkeypatch.setattr(Redactor, "_walk", spy)

    def at_depth(n: int) -> object:
        return at_depth(n - 1) if n else redact(data)

    limit = sys.getrecursionlimit()
    # find the deepest call that still works, so that redact() starts with only a few frames left
    out = None
    for margin in (10, 20, 40, 80):
        try:
            out = at_depth(limit - margin)
            break
        except RecursionError:
            continue
    assert out is not None
    assert restarted, "redact() should have hit RecursionError and restarted iteratively"
    assert _depth(out) == 300
    inner = out
    while isinstance(inner, list):
        inner = inner[0]
    assert inner == {"token": REDACTED, "v": f"Bearer {REDACTED}"}


def test_iterative_and_recursive_copies_agree() -> None:
    shared = ["s", {"api_key": "k"}]
    data = {
        "a": [1, "password=pw12345", (b"cookie", b"c"), shared, shared, {"x", "y"}, frozenset({"z"})],
        "b": {"name": "DB_PASSWORD", "value": "v"},
        SECRET_A: {"k": SECRET_A},
    }
    r = Redactor().with_secrets([SECRET_A])
    assert r._walk(data, {}) == r.redact(data)


def test_output_is_json_serialisable_when_input_is() -> None:
    data = {"headers": {"Authorization": "Bearer abc123def456"}, "items": [{"token": None, "n": 1.5}]}
    assert orjson.loads(orjson.dumps(redact(data))) == {
        "headers": {"Authorization": REDACTED},
        "items": [{"token": REDACTED, "n": 1.5}],
    }

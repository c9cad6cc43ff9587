"""Property tests: no resolved secret survives redaction, whatever the shape of the data."""

from __future__ import annotations

import copy
import string
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automate.core.redaction import REDACTED, Redactor, is_sensitive_key

# Secrets: 8-40 characters of lower-case letters and digits with at least one of each. That alphabet
# cannot form the markers ("[REDACTED]", "[CYCLE]", "#2"), JSON punctuation or the repr of a number or a
# constant, so a secret found in the output can only have come from the input.
_SECRET_ALPHABET = string.ascii_lowercase + string.digits
secret_values = st.text(_SECRET_ALPHABET, min_size=8, max_size=40).filter(
    lambda s: any(c.isdigit() for c in s) and any(c.isalpha() for c in s)
)
innocent_text = st.text(max_size=12)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    innocent_text,
)

settings.register_profile("redaction", deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Trees are generated with placeholder slots, then each slot is replaced by one of the drawn secrets: the
# tree strategy stays fixed (a strategy built from drawn data makes hypothesis' generation inconsistent).
_SLOTS = [f"\x00slot{i}\x00" for i in range(4)]
_slot = st.sampled_from(_SLOTS)
# Text with one or more secrets in it, next to each other or among other text.
_embedded = st.lists(st.one_of(innocent_text, _slot), min_size=1, max_size=5).map("".join)


def _fill(value: Any, secrets: list[str]) -> Any:
    """``value`` with every slot replaced by a secret (slot i -> secrets[i % len(secrets)])."""
    if isinstance(value, str):
        for i, slot in enumerate(_SLOTS):
            value = value.replace(slot, secrets[i % len(secrets)])
        return value
    if isinstance(value, bytes):
        return _fill(value.decode("utf-8", "surrogateescape"), secrets).encode("utf-8", "surrogateescape")
    if isinstance(value, dict):
        return {_fill(k, secrets): _fill(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(_fill(v, secrets) for v in value)
    return value


json_trees = st.recursive(
    st.one_of(scalars, _slot, _embedded),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(innocent_text, _slot, _embedded), children, max_size=5),
    ),
    max_leaves=40,
)
_hashables = st.recursive(
    st.one_of(scalars, _slot, _embedded, _embedded.map(str.encode)),
    lambda c: st.one_of(st.tuples(c, c), st.frozensets(c, max_size=3)),
    max_leaves=8,
)
python_trees = st.recursive(
    _hashables,
    lambda c: st.one_of(
        st.lists(c, max_size=4),
        st.sets(_hashables, max_size=4),
        st.dictionaries(_hashables, c, max_size=4),
    ),
    max_leaves=25,
)
secret_lists = st.lists(secret_values, min_size=1, max_size=4, unique=True)


@settings(settings.get_profile("redaction"), max_examples=150)
@given(secrets=secret_lists, tree=json_trees)
def test_no_secret_survives_in_any_nesting(secrets: list[str], tree: Any) -> None:
    tree = _fill(tree, secrets)
    # Always plant the secrets in each position too, so no example is vacuous.
    tree = [tree, {"note": f"start {secrets[0]} end", secrets[-1]: "value", "n": [secrets[-1]]}]
    assert all(s.encode() in orjson.dumps(tree) for s in {secrets[0], secrets[-1]})

    out = Redactor().with_secrets(secrets).redact(tree)

    dumped = orjson.dumps(out).decode()
    shown = repr(out)
    for s in secrets:
        assert s not in dumped
        assert s not in shown
    assert REDACTED in dumped


@settings(settings.get_profile("redaction"), max_examples=100)
@given(secrets=secret_lists, tree=python_trees)
def test_no_secret_survives_in_python_containers(secrets: list[str], tree: Any) -> None:
    """Tuples, sets, frozensets and bytes too (checked through repr, as orjson cannot encode them)."""
    tree = (_fill(tree, secrets), secrets[0], {secrets[0]: frozenset({secrets[-1].encode()})})
    out = Redactor().with_secrets(secrets).redact(tree)
    shown = repr(out)
    for s in secrets:
        assert s not in shown


@settings(settings.get_profile("redaction"), max_examples=100)
@given(tree=json_trees)
def test_redaction_never_mutates_its_input(tree: Any) -> None:
    tree = _fill(tree, ["plantedsecret123", "othersecret9876"])
    before = copy.deepcopy(tree)
    Redactor().with_secrets(["plantedsecret123", "othersecret9876"]).redact(tree)
    assert tree == before


@settings(settings.get_profile("redaction"), max_examples=100)
@given(tree=json_trees)
def test_redaction_is_idempotent(tree: Any) -> None:
    tree = _fill(tree, ["plantedsecret123", "password=hunter2x"])
    r = Redactor().with_secrets(["plantedsecret123"])
    once = r.redact(tree)
    assert r.redact(once) == once


@settings(settings.get_profile("redaction"), max_examples=100)
@given(tree=python_trees)
def test_iterative_walker_agrees_with_the_recursive_copy(tree: Any) -> None:
    tree = _fill(tree, ["plantedsecret123", "Bearer abc123def456"])
    r = Redactor().with_secrets(["plantedsecret123"])
    assert r._walk(tree, {}) == r.redact(tree)


_WORDS = ["password", "secret", "token", "api key", "private key", "access token", "client secret", "cookie"]
_PREFIXES = ["", "db", "stripe", "github", "x", "my app", "oauth2"]


def _style(words: list[str], style: str) -> str:
    parts = [p for w in words for p in w.split()]
    if style == "snake":
        return "_".join(parts)
    if style == "kebab":
        return "-".join(parts)
    if style == "upper":
        return "_".join(parts).upper()
    if style == "title":
        return "-".join(p.title() for p in parts)
    return parts[0] + "".join(p.title() for p in parts[1:])  # camel


@given(
    prefix=st.sampled_from(_PREFIXES),
    word=st.sampled_from(_WORDS),
    style=st.sampled_from(["snake", "kebab", "upper", "title", "camel"]),
    value=st.one_of(scalars, st.lists(scalars, max_size=3)),
)
def test_sensitive_names_match_in_every_naming_style(prefix: str, word: str, style: str, value: object) -> None:
    key = _style([prefix, word] if prefix else [word], style)
    assert is_sensitive_key(key)
    assert Redactor().redact({key: value, "other": 1}) == {key: REDACTED, "other": 1}


_TOKENS = st.one_of(
    st.text(string.ascii_letters + string.digits, min_size=36, max_size=40).map(lambda s: "ghp_" + s),
    st.text(string.ascii_letters + string.digits, min_size=24, max_size=30).map(lambda s: "sk_live_" + s),
    st.text(string.ascii_uppercase + string.digits, min_size=16, max_size=16).map(lambda s: "AKIA" + s),
    st.text(string.ascii_letters + string.digits + "-", min_size=24, max_size=40).map(lambda s: "xoxb-" + s),
    st.tuples(*[st.text(string.ascii_letters + string.digits + "_-", min_size=8, max_size=30)] * 3).map(
        lambda t: f"eyJ{t[0]}.{t[1]}.{t[2]}"
    ),
)
_AROUND = st.text(string.ascii_letters + string.digits + " .,:;!?()-", max_size=20)


@given(before=_AROUND, token=_TOKENS, after=_AROUND, sep=st.sampled_from([" ", "\n", "=", ": ", '"', "'", "("]))
def test_vendor_tokens_vanish_from_free_text(before: str, token: str, after: str, sep: str) -> None:
    text = f"{before}{sep}{token}{sep}{after}"
    assert token not in Redactor().redact(text)

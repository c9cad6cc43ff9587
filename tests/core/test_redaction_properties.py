"""Property tests: no resolved secret survives redaction, whatever the shape of the data."""

from __future__ import annotations

import copy
import string

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


def _planted_trees(secrets: list[str]) -> st.SearchStrategy[object]:
    """JSON-like trees in which the secrets appear as values, as substrings and as keys."""
    secret = st.sampled_from(secrets)
    embedded = st.builds(lambda a, s, b: f"{a}{s}{b}", innocent_text, secret, innocent_text)
    leaves = st.one_of(scalars, secret, embedded)
    keys = st.one_of(innocent_text, secret, embedded)
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(keys, children, max_size=5),
        ),
        max_leaves=40,
    )


@settings(settings.get_profile("redaction"), max_examples=150)
@given(data=st.data())
def test_no_secret_survives_in_any_nesting(data: st.DataObject) -> None:
    secrets = data.draw(st.lists(secret_values, min_size=1, max_size=4, unique=True), label="secrets")
    tree = data.draw(_planted_trees(secrets), label="tree")
    # Always plant each secret at least once, in each position, so no example is vacuous.
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
@given(data=st.data())
def test_no_secret_survives_in_python_containers(data: st.DataObject) -> None:
    """Tuples, sets, frozensets and bytes too (checked through repr, as orjson cannot encode them)."""
    secrets = data.draw(st.lists(secret_values, min_size=1, max_size=3, unique=True), label="secrets")
    secret = st.sampled_from(secrets)
    embedded = st.builds(lambda a, s, b: f"{a}{s}{b}", innocent_text, secret, innocent_text)
    hashable = st.recursive(
        st.one_of(scalars, secret, embedded, embedded.map(str.encode)),
        lambda c: st.one_of(st.tuples(c, c), st.frozensets(c, max_size=3)),
        max_leaves=8,
    )
    tree = data.draw(
        st.recursive(
            hashable,
            lambda c: st.one_of(
                st.lists(c, max_size=4),
                st.sets(hashable, max_size=4),
                st.dictionaries(hashable, c, max_size=4),
            ),
            max_leaves=25,
        ),
        label="tree",
    )
    tree = (tree, secrets[0], {secrets[0]: frozenset({secrets[-1].encode()})})
    out = Redactor().with_secrets(secrets).redact(tree)
    shown = repr(out)
    for s in secrets:
        assert s not in shown


@settings(settings.get_profile("redaction"), max_examples=100)
@given(tree=_planted_trees(["plantedsecret123", "othersecret9876"]))
def test_redaction_never_mutates_its_input(tree: object) -> None:
    before = copy.deepcopy(tree)
    Redactor().with_secrets(["plantedsecret123", "othersecret9876"]).redact(tree)
    assert tree == before


@settings(settings.get_profile("redaction"), max_examples=100)
@given(tree=_planted_trees(["plantedsecret123", "password=hunter2x"]))
def test_redaction_is_idempotent(tree: object) -> None:
    r = Redactor().with_secrets(["plantedsecret123"])
    once = r.redact(tree)
    assert r.redact(once) == once


@settings(settings.get_profile("redaction"), max_examples=100)
@given(tree=_planted_trees(["plantedsecret123", "Bearer abc123def456"]))
def test_iterative_walker_agrees_with_the_recursive_copy(tree: object) -> None:
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

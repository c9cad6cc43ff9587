"""Sensitive values inside a string: where they are (spans), and how the spans are replaced.

The builtin patterns: ``Bearer``/``Basic`` credentials, vendor tokens with a literal prefix (``sk-``,
``xoxb-``, ``ghp_``, ``AKIA``, JWTs...), PEM private-key blocks, the password of a URL, Slack webhook paths,
and ``name=value`` / ``name: value`` / ``"name": "value"`` pairs whose name is sensitive by the key rule.
Every regex starts with a literal, and runs only when a cheap ``in`` test finds that literal in the text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from automate.core.redaction.keys import normalize_key

__all__ = ["KV_ANCHORS", "MIN_PATTERN_LEN", "REDACTED", "KeyRule", "apply_spans", "builtin_spans"]

REDACTED: Final = "[REDACTED]"

_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")

# Lower-case words that every sensitive name written in free text contains ("api_key" holds "key",
# "session_id" holds "sess"). Each occurrence is widened to the whole name around it, and the name is
# judged by the key rule: ``max_tokens=5`` is kept, ``db_password=hunter2`` is not.
KV_ANCHORS: Final = (
    "pass", "pwd", "secret", "token", "key", "auth", "cookie", "credential", "sess", "jwt", "bearer", "sig",
    "otp",
)  # fmt: skip
# What may follow a name: a separator, then the value (double-, single- or escaped-quoted, or bare up to a
# delimiter; an unterminated quote runs to the end of the text: fail closed).
_KV_VALUE_RX: Final = re.compile(
    r"\\?[\"']?[ \t]*[:=][ \t]*"
    r"(?:\\\"(?P<v1>(?s:.*?))(?:\\\"|\Z)|\"(?P<v2>(?:[^\"\\]|\\.)*)(?:\"|\Z)|'(?P<v3>(?:[^'\\]|\\.)*)(?:'|\Z)"
    r"|(?:(?i:bearer|basic|token|digest|bot|negotiate)[ \t]+)?(?P<v4>[^\s&#;,\"'<>(){}\[\]]+))"
)
_KV_VALUE_GROUPS: Final = ("v1", "v2", "v3", "v4")
_KV_FOLLOW: Final = frozenset(":=\"'\\ \t")
# A header line "Cookie: a=b; c=d": the whole rest of the line is the credential.
_COOKIE_VALUE_RX: Final = re.compile(r"[ \t]*:[ \t]*(?P<v>[^\r\n\"']+)")
_COOKIE_NAMES: Final = frozenset({"cookie", "setcookie"})
_PEM_RX: Final = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?P<v>(?s:.*?))(?:-----END[A-Z0-9 ]*PRIVATE KEY|\Z)"
)
# The password of a URL's userinfo: scheme://user:PASSWORD@host (the password may itself hold '@').
_URL_RX: Final = re.compile(r"://[^\s:/?#@\"'<>\[\]]*:(?P<v>[^\s/?#\"'<>]+)@")
# Slack incoming webhook / workflow trigger URLs: the path is the credential.
_SLACK_RX: Final = re.compile(r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<v>[A-Za-z0-9_/\-]+)")
# Authorization schemes in free text ("Bearer x", "Basic x", found with str.find on the lowered text): only a
# token-looking credential (a digit or symbol, a capital after a small letter, or 20+ characters), so that
# "Basic authentication" stays readable.
_TC = r"[A-Za-z0-9\-._~+/]"
_SCHEME_WORDS: Final = ("bearer", "basic")
_SCHEME_VALUE_RX: Final = re.compile(
    rf"[ \t]+(?P<v>(?={_TC}*?[0-9\-_~+/=]|{_TC}*?[a-z]{_TC}*?[A-Z]|{_TC}{{20}}){_TC}{{8,}}=*)"
)


def _prefixed(prefix: str, rest: str) -> re.Pattern[str]:
    """A token regex that starts with a literal (so ``re`` scans for it fast) not preceded by a letter or a
    digit (a lookbehind placed *after* the literal, which keeps the literal first)."""
    lit = re.escape(prefix)
    return re.compile(f"{lit}(?<![A-Za-z0-9]{lit}){rest}")


# Vendor tokens with a recognisable literal prefix: (prefix, regex); a regex runs only when its prefix is in
# the text.
_TOKEN_RXS: Final = (
    ("sk-", _prefixed("sk-", r"[A-Za-z0-9_\-]{16,}")),  # OpenAI / Anthropic style
    ("rk-", _prefixed("rk-", r"[A-Za-z0-9_\-]{16,}")),
    ("sk_live_", _prefixed("sk_live_", r"[A-Za-z0-9]{10,}")),  # Stripe secret and restricted keys
    ("sk_test_", _prefixed("sk_test_", r"[A-Za-z0-9]{10,}")),
    ("rk_live_", _prefixed("rk_live_", r"[A-Za-z0-9]{10,}")),
    ("rk_test_", _prefixed("rk_test_", r"[A-Za-z0-9]{10,}")),
    ("whsec_", _prefixed("whsec_", r"[A-Za-z0-9+/=]{20,}")),  # Stripe webhook signing secret
    ("xox", _prefixed("xox", r"[abeprs]-[A-Za-z0-9\-]{10,}")),  # Slack bot / user / app tokens
    ("xapp-", _prefixed("xapp-", r"[0-9]-[A-Za-z0-9\-]{10,}")),
    ("gh", _prefixed("gh", r"[pousr]_[A-Za-z0-9]{30,}")),  # GitHub
    ("github_pat_", _prefixed("github_pat_", r"[A-Za-z0-9_]{30,}")),
    ("glpat-", _prefixed("glpat-", r"[A-Za-z0-9_\-]{20,}")),  # GitLab
    ("AIza", _prefixed("AIza", r"[0-9A-Za-z_\-]{35}")),  # Google API key
    ("AKIA", _prefixed("AKIA", r"[A-Z0-9]{16}(?![A-Za-z0-9])")),  # AWS access key id
    ("ASIA", _prefixed("ASIA", r"[A-Z0-9]{16}(?![A-Za-z0-9])")),
    ("eyJ", _prefixed("eyJ", r"[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")),  # JWT
)
#: Every builtin match needs at least this many characters; shorter strings are not scanned.
MIN_PATTERN_LEN: Final = 5

#: A key decision: ``key(name) -> (redacted name, sensitive?)``, as a redactor makes it (extra keys, cache).
KeyRule = Callable[[str], tuple[str, bool]]


def builtin_spans(text: str, spans: list[tuple[int, int]], anchors: tuple[str, ...], key: KeyRule) -> None:
    """Add the (start, end) spans the builtin value patterns and the ``name=value`` pairs find in ``text``
    (at least :data:`MIN_PATTERN_LEN` long); spans may overlap (merged by :func:`apply_spans`).

    ``anchors`` are the words that find a name in free text (:data:`KV_ANCHORS` and the first letters of
    each extra key); ``key`` judges the whole name.
    """
    if "://" in text:
        spans.extend(m.span("v") for m in _URL_RX.finditer(text))
        if "hooks.slack.com" in text:
            spans.extend(m.span("v") for m in _SLACK_RX.finditer(text))
    if "PRIVATE KEY" in text:
        spans.extend(m.span("v") for m in _PEM_RX.finditer(text))
    for prefix, rx in _TOKEN_RXS:
        if prefix in text:
            spans.extend(m.span() for m in rx.finditer(text))
    low = text.lower()
    if len(low) != len(text):  # a few non-ASCII letters lengthen when lowered: keep indexes aligned
        low = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    for word in _SCHEME_WORDS:
        i = low.find(word)
        while i != -1:
            if i == 0 or not text[i - 1].isalnum():
                m = _SCHEME_VALUE_RX.match(text, i + len(word))
                if m is not None:
                    spans.append(m.span("v"))
            i = low.find(word, i + 1)
    if ":" in text or "=" in text:
        _kv_spans(text, low, anchors, key, spans)


def _kv_spans(text: str, low: str, anchors: tuple[str, ...], key: KeyRule, spans: list[tuple[int, int]]) -> None:
    """Spans of the values of ``name=value`` / ``name: value`` pairs whose name is sensitive."""
    n = len(text)
    names = _NAME_CHARS
    seen: set[int] = set()
    for word in anchors:
        i = low.find(word)
        while i != -1:
            start = i
            while start > 0 and text[start - 1] in names:
                start -= 1
            end = i + len(word)
            while end < n and text[end] in names:
                end += 1
            if end < n and text[end] in _KV_FOLLOW and start not in seen:
                seen.add(start)
                name = text[start:end]
                if start > 0 and text[start - 1] == "$" and name == "secret":
                    pass  # a "$secret:NAME" reference names a secret, it holds no value
                elif key(name)[1]:
                    m = None
                    if normalize_key(name) in _COOKIE_NAMES:
                        m = _COOKIE_VALUE_RX.match(text, end)
                        if m is not None:
                            spans.append(m.span("v"))
                    if m is None:
                        m = _KV_VALUE_RX.match(text, end)
                        if m is not None:
                            for group in _KV_VALUE_GROUPS:
                                if m.start(group) != -1:
                                    if m.end(group) > m.start(group):
                                        spans.append(m.span(group))
                                    break
            i = low.find(word, end)


def apply_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """Replace the union of ``spans`` (at least one) with one marker per merged run."""
    spans.sort()
    parts = []
    pos = 0
    cur_a, cur_b = spans[0]
    for a, b in spans[1:]:
        if a <= cur_b:
            if b > cur_b:
                cur_b = b
            continue
        parts.append(text[pos:cur_a])
        parts.append(REDACTED)
        pos = cur_b
        cur_a, cur_b = a, b
    parts.append(text[pos:cur_a])
    parts.append(REDACTED)
    parts.append(text[cur_b:])
    return "".join(parts)

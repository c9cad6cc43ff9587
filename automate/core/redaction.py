"""Redaction: a redacted *copy* of any JSON-like value, with nothing sensitive left in it.

Pure Python (no Django, no psycopg): every log record, span attribute, audit detail and stored output
passes through :meth:`Redactor.redact`, so it is written for speed: literal pre-checks (``in``, at C speed)
before any regex, regexes that start with a literal, a per-redactor cache of key decisions and of strings
already known to be clean, and recursion for the usual shallow case.

Three things are redacted:

1. **Sensitive keys.** A mapping key (also the first item of a 2-tuple such as an ASGI header
   ``(b"authorization", b"...")``, and the ``name``/``key`` of a ``{"name": ..., "value": ...}`` dict such as
   a Kubernetes env var, a HAR header or an AWS tag) is *normalised*: lower-cased with every
   non-alphanumeric character removed, so ``api_key``, ``apiKey``, ``X-Api-Key`` and ``API-KEY`` are all
   ``apikey``. The key is sensitive when

   - the normalised key is one of :data:`EXACT_KEYS`: short words that would give false positives as
     substrings (``auth`` must not match ``author``, ``pass`` must not match ``passenger``), or
   - it contains one of :data:`SENSITIVE_SUBSTRINGS` (``password``, ``secret``, ``token``, ``apikey``,
     ``cookie``, ``credential``, ``privatekey``, ``sessionid``, ...) *after* the phrases matched by
     :data:`EXEMPT_RE` are removed. The exemptions are the false-positive rule: counts and metadata
     *about* tokens (``max_tokens``, ``prompt_tokens``, ``token_count``, ``token_type``, ``tokenizer``,
     ``token_expires_in``) and the *name* of a secret (``secret_name``, ``secret_ref``) are not secrets.
     So ``access_token_expires_at`` is kept and ``access_token`` is not. Anything else that merely
     *contains* a sensitive word is redacted (fail closed): ``password_changed_at`` loses its value,
     which is harmless. A bare ``key`` is not sensitive (``"key": "order-42"`` is everywhere).
   - or it contains one of the extra keys (``Redactor(extra_keys=...)``, normalised the same way).

   The value of a sensitive key is replaced by ``"[REDACTED]"`` whatever its type (dict, list,
   ``None``...) and is not traversed.

2. **Sensitive values inside any string** (values, keys, bytes): ``Bearer``/``Basic`` credentials,
   ``sk-``/``sk_live_``/``rk_live_``/``whsec_`` keys, Slack ``xox?-`` tokens and incoming-webhook paths,
   GitHub ``ghp_``/``github_pat_`` and GitLab ``glpat-`` tokens, Google ``AIza`` keys, JWTs, AWS access
   key ids (``AKIA``/``ASIA``), PEM private-key blocks, the password of a URL
   (``https://user:[REDACTED]@host``), and ``name=value`` / ``name: value`` / ``"name": "value"`` pairs
   whose *name* is sensitive by the key rule above (query strings, log lines, the repr of a dict, a JSON
   document held as a string, a ``Cookie:`` header line; but not a ``$secret:NAME`` reference, which holds
   no value). Only the sensitive span is replaced. In free
   text a name is found through one of :data:`_KV_ANCHORS` (``pass``, ``token``, ``key``, ``sess``...)
   and widened to the whole name around it; an extra key is found through its first three letters.

3. **Run-scoped literal secrets.** :meth:`Redactor.with_secrets` returns a redactor that also scrubs every
   occurrence of the given values, and of their JSON-escaped, URL-quoted and base64 forms, anywhere:
   whole values, substrings, keys, bytes, under innocent keys. Occurrences that overlap (two secrets, or
   one secret twice) are merged into one ``[REDACTED]`` so no fragment survives. Values shorter than
   ``min_secret_length`` (default 4) are not scrubbed as literals: scrubbing ``"abc"`` everywhere would
   destroy unrelated output; a realistic secret is far longer, and short ones are still caught by key
   names and patterns.

Structure: the input is never mutated. dicts (and other mappings) become dicts, lists stay lists, tuples
stay tuples, sets/frozensets stay sets/frozensets, bytes stay bytes (decoded as UTF-8 with
``surrogateescape`` so undecodable bytes survive unchanged). A back-reference to a container that is being
copied (a cycle) becomes ``"[CYCLE]"``; a container shared by two parents (not a cycle) is copied once and
shared in the copy too. **No depth limit and no RecursionError**: the first ``_RECURSION_DEPTH`` levels are
copied by recursion (fastest), anything deeper by an iterative walker with an explicit stack, and if the
caller has little stack left the whole value is copied iteratively; a 100 000-deep list is redacted in
full. Scalars (numbers, booleans, ``None``, dates, UUIDs, Decimals, enums) are returned as they are; any
other object becomes the redacted ``str()`` of it, so nothing reaches a sink that the redactor has not
seen. Dict keys that become equal after redaction are kept apart with a ``#2`` suffix.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import enum
import json
import re
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = [
    "CYCLE",
    "DEFAULT_MIN_SECRET_LENGTH",
    "EXACT_KEYS",
    "EXEMPT_RE",
    "REDACTED",
    "SENSITIVE_SUBSTRINGS",
    "Redactor",
    "default_redactor",
    "is_sensitive_key",
    "normalize_key",
    "redact",
]

REDACTED: Final = "[REDACTED]"
CYCLE: Final = "[CYCLE]"
DEFAULT_MIN_SECRET_LENGTH: Final = 4

#: Normalised keys that are sensitive only as a whole (as substrings they would hit ordinary words).
EXACT_KEYS: Final = frozenset(
    {"auth", "xauth", "authkey", "authheader", "basicauth", "proxyauth", "pass", "session", "sig", "otp"}
)
#: Normalised substrings that make a key sensitive (``db_password``, ``stripeSecretKey``, ``github_token``).
SENSITIVE_SUBSTRINGS: Final = (
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "privkey",
    "signingkey",
    "encryptionkey",
    "authorization",
    "cookie",
    "credential",
    "sessionid",
    "sessionkey",
    "sessid",
    "jwt",
    "bearer",
    "signature",
)
#: Removed from a normalised key before the substring test: metadata about tokens, names of secrets.
EXEMPT_RE: Final = re.compile(
    r"(?:max|prompt|completion|total|input|output|cached|reasoning|num|used|remaining|estimated)tokens?"
    r"|tokens?(?:counts?|usage|used|limits?|types?|izer|ized|ize|ization|endpoint|url|uri|expiry"
    r"|expiresat|expiresin|expires|ttl|lifetime|length|len)"
    r"|secrets?(?:names?|refs?|reference|arn|path)"
)

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_CACHE_MAX: Final = 16384  # entries in each per-redactor cache (key decisions, strings known to be clean)
_CLEAN_MAX_LEN: Final = 256  # only strings up to this length are remembered

# Lower-case words that every sensitive name written in free text contains ("api_key" holds "key",
# "session_id" holds "sess"). Each occurrence is widened to the whole name around it, and the name is
# judged by the key rule: ``max_tokens=5`` is kept, ``db_password=hunter2`` is not.
_KV_ANCHORS: Final = (
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
# Every builtin match needs at least this many characters; shorter strings are not scanned.
_MIN_PATTERN_LEN: Final = 5
_PASSTHROUGH: Final = frozenset(
    {int, float, bool, type(None), complex, decimal.Decimal, uuid.UUID, _dt.datetime, _dt.date, _dt.time,
     _dt.timedelta}
)  # fmt: skip
_ACTIVE: Final = object()  # state of a container whose copy is in progress
_PUSHED: Final = object()  # _open pushed a frame
_LEAF, _DICT, _LIST, _TUPLE, _SET, _FROZENSET = range(6)
# Containers nested deeper than this are copied by the iterative walker instead of by recursion.
_RECURSION_DEPTH: Final = 48
_LABELLED: Final = (("name", "value"), ("key", "value"), ("Name", "Value"), ("Key", "Value"))


def normalize_key(key: str) -> str:
    """``"X-Api-Key"`` -> ``"xapikey"``: lower case, every non-alphanumeric character removed."""
    return _NON_ALNUM.sub("", key.lower())


def is_sensitive_key(key: str, *, normalized: bool = False) -> bool:
    """The builtin key rule (no extra keys). ``normalized=True`` when ``key`` is already normalised."""
    n = key if normalized else normalize_key(key)
    if n in EXACT_KEYS:
        return True
    n = EXEMPT_RE.sub("", n)
    return any(s in n for s in SENSITIVE_SUBSTRINGS)


class Redactor:
    """An immutable redaction policy. Build once, call :meth:`redact` many times; thread-safe.

    ``extra_keys``: more sensitive key names (normalised, matched as substrings).
    ``extra_patterns``: more regexes (strings or compiled); a match is replaced whole, or only its
    ``secret`` named group when it has one.
    ``secrets``: literal values to scrub wherever they appear (see :meth:`with_secrets`).
    ``min_secret_length``: literal values shorter than this are ignored (default 4).
    """

    _anchors: tuple[str, ...]
    _clean: set[str]
    _rules_clean: set[str]
    _extra_keys: tuple[str, ...]
    _key_cache: dict[str, tuple[str, bool]]
    _min_scan: int
    _min_secret_length: int
    _secret_rx: re.Pattern[str] | None
    _secrets: frozenset[str]
    _user_rx: tuple[re.Pattern[str], ...]
    __slots__ = (
        "_anchors",
        "_clean",
        "_extra_keys",
        "_key_cache",
        "_min_scan",
        "_min_secret_length",
        "_rules_clean",
        "_secret_rx",
        "_secrets",
        "_user_rx",
    )

    def __init__(
        self,
        extra_keys: Iterable[str] = (),
        extra_patterns: Iterable[str | re.Pattern[str]] = (),
        secrets: Iterable[str] = (),
        *,
        min_secret_length: int = DEFAULT_MIN_SECRET_LENGTH,
    ) -> None:
        if min_secret_length < 1:
            raise ValueError("min_secret_length must be at least 1")
        if isinstance(extra_keys, str) or isinstance(extra_patterns, str) or isinstance(secrets, str):
            raise TypeError("extra_keys, extra_patterns and secrets are iterables of strings, not a string")
        keys = tuple(sorted({normalize_key(k) for k in extra_keys} - {""}))
        user_rx = tuple(p if isinstance(p, re.Pattern) else re.compile(p) for p in extra_patterns)
        values = frozenset(v for v in secrets if isinstance(v, str) and len(v) >= min_secret_length)
        init = object.__setattr__
        init(self, "_extra_keys", keys)
        init(self, "_user_rx", user_rx)
        init(self, "_secrets", values)
        init(self, "_min_secret_length", min_secret_length)
        init(self, "_anchors", tuple(dict.fromkeys(_KV_ANCHORS + tuple(k[:3] for k in keys))))
        init(self, "_secret_rx", _compile_secrets(values, min_secret_length))
        init(self, "_min_scan", 1 if user_rx else min(_MIN_PATTERN_LEN, min_secret_length))
        init(self, "_key_cache", {})
        # Strings known to come out unchanged: under everything (own), and under the key and pattern rules
        # alone (shared with every redactor derived by with_secrets, so a run's new redactor starts warm).
        init(self, "_clean", set())
        init(self, "_rules_clean", self._clean if not values else set())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __repr__(self) -> str:  # never shows a secret value, only how many there are
        return (
            f"Redactor(extra_keys={self._extra_keys!r}, extra_patterns={len(self._user_rx)}, "
            f"secrets={len(self._secrets)})"
        )

    @property
    def extra_keys(self) -> tuple[str, ...]:
        return self._extra_keys

    @property
    def extra_patterns(self) -> tuple[re.Pattern[str], ...]:
        return self._user_rx

    @property
    def min_secret_length(self) -> int:
        return self._min_secret_length

    @property
    def secret_count(self) -> int:
        """How many literal secrets this redactor scrubs (the values themselves are not exposed)."""
        return len(self._secrets)

    def with_secrets(self, values: Iterable[str]) -> Redactor:
        """A redactor with the same rules that also scrubs these literal values (added to any it had)."""
        if isinstance(values, str):
            raise TypeError("with_secrets() takes an iterable of values, not a string")
        new = {v for v in values if isinstance(v, str) and len(v) >= self._min_secret_length}
        if new <= self._secrets:
            return self
        derived = Redactor(
            self._extra_keys, self._user_rx, self._secrets | new, min_secret_length=self._min_secret_length
        )
        object.__setattr__(derived, "_rules_clean", self._rules_clean)
        return derived

    # -- keys -------------------------------------------------------------------------------------------

    def is_sensitive_key(self, key: str) -> bool:
        """Whether the value under ``key`` is redacted whole (see the module docstring for the rule)."""
        n = normalize_key(key)
        if not n:
            return False
        for extra in self._extra_keys:
            if extra in n:
                return True
        return is_sensitive_key(n, normalized=True)

    def _key(self, key: str) -> tuple[str, bool]:
        """(redacted key, sensitive?) for a str key, cached: the same keys come back in every record."""
        cache = self._key_cache
        hit = cache.get(key)
        if hit is not None:
            return hit
        result = (self.redact_str(key), self.is_sensitive_key(key))
        # A key that holds a secret is not remembered (it is redacted again next time, which is rare).
        if len(key) <= _CLEAN_MAX_LEN and result[0] is key:
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[key] = result
        return result

    def _any_key(self, key: Any) -> tuple[Any, bool]:
        if type(key) is str:
            return self._key(key)
        if isinstance(key, str):
            return self._key(str(key))
        if isinstance(key, bytes):
            text = key.decode("utf-8", "surrogateescape")
            new, sensitive = self._key(text)
            return (key if new == text else new.encode("utf-8", "surrogateescape")), sensitive
        if isinstance(key, (tuple, frozenset)):
            return self.redact(key), False
        return key, False

    # -- strings ----------------------------------------------------------------------------------------

    def redact_str(self, text: str) -> str:
        """``text`` with every literal secret and sensitive pattern replaced (only the sensitive spans)."""
        if len(text) < self._min_scan:
            return text
        short = len(text) <= _CLEAN_MAX_LEN
        if short and text in self._clean:
            return text
        spans: list[tuple[int, int]] = []
        secret_rx = self._secret_rx
        if secret_rx is not None:
            # Every occurrence, overlapping ones too: search again one character after each start. At
            # one start the alternation (longest first) gives the longest secret there.
            m = secret_rx.search(text)
            while m is not None:
                spans.append(m.span())
                m = secret_rx.search(text, m.start() + 1)
        if spans or not short or text not in self._rules_clean:
            self._pattern_spans(text, spans)
        if not spans:
            # Only strings the redactor emits unchanged are remembered, so these caches never hold
            # anything it found sensitive.
            if short:
                for clean in (self._clean, self._rules_clean):
                    if len(clean) >= _CACHE_MAX:
                        clean.clear()
                    clean.add(text)
            return text
        return _apply(text, spans)

    def _pattern_spans(self, text: str, spans: list[tuple[int, int]]) -> None:
        """Add the (start, end) spans the key and value patterns find; spans may overlap (merged later)."""
        if len(text) >= _MIN_PATTERN_LEN:
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
                self._kv_spans(text, low, spans)
        for user in self._user_rx:
            has_group = "secret" in user.groupindex
            for m in user.finditer(text):
                if has_group and m.start("secret") != -1:
                    spans.append(m.span("secret"))
                elif m.end() > m.start():
                    spans.append(m.span())

    def _kv_spans(self, text: str, low: str, spans: list[tuple[int, int]]) -> None:
        """Spans of the values of ``name=value`` / ``name: value`` pairs whose name is sensitive."""
        n = len(text)
        names = _NAME_CHARS
        seen: set[int] = set()
        for word in self._anchors:
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
                    elif self._key(name)[1]:
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

    def redact_bytes(self, data: bytes | bytearray | memoryview) -> bytes:
        """Bytes in, bytes out: decoded as UTF-8 with ``surrogateescape``, so every byte round-trips."""
        raw = bytes(data)
        text = raw.decode("utf-8", "surrogateescape")
        new = self.redact_str(text)
        return raw if new is text else new.encode("utf-8", "surrogateescape")

    # -- any value --------------------------------------------------------------------------------------

    def redact(self, data: Any) -> Any:
        """A redacted copy of ``data``; ``data`` itself is never modified."""
        t = type(data)
        if t is str:
            return self.redact_str(data)
        if t in _PASSTHROUGH:
            return data
        try:
            return self._copy(data, {}, 0)
        except RecursionError:  # called with little stack left: start again without recursion
            return self._walk(data, {})

    __call__ = redact

    def _classify(self, value: Any) -> tuple[int, Any]:
        """``(kind, None)`` for a container to copy, ``(_LEAF, redacted value)`` for anything else."""
        t = type(value)
        if t is dict:
            return _DICT, None
        if t is list:
            return _LIST, None
        if t is tuple:
            if len(value) == 2 and isinstance(value[0], (str, bytes)):  # a (name, value) pair
                name, sensitive = self._any_key(value[0])
                if sensitive:
                    return _LEAF, (name, REDACTED)
            return _TUPLE, None
        if t in _PASSTHROUGH:
            return _LEAF, value
        if isinstance(value, str):
            return _LEAF, self.redact_str(str(value))
        if isinstance(value, (bytes, bytearray, memoryview)):
            return _LEAF, self.redact_bytes(value)
        if isinstance(value, (int, float, enum.Enum, _dt.date, _dt.time, _dt.timedelta)):
            return _LEAF, value
        if isinstance(value, Mapping):
            return _DICT, None
        if isinstance(value, frozenset):
            return _FROZENSET, None
        if isinstance(value, set):
            return _SET, None
        if isinstance(value, tuple):
            return _TUPLE, None
        if isinstance(value, list):
            return _LIST, None
        try:
            text = str(value)
        except Exception:  # a broken __str__ must not break the log line that carries it
            return _LEAF, f"[UNPRINTABLE {t.__name__}]"
        return _LEAF, self.redact_str(text)

    def _forced(self, mapping: Mapping[Any, Any]) -> Any:
        """The value key of ``{"name": "DB_PASSWORD", "value": ...}`` when the name is sensitive."""
        if "value" in mapping or "Value" in mapping:
            for label_key, value_key in _LABELLED:
                label = mapping.get(label_key)
                if isinstance(label, str) and value_key in mapping and self._key(label)[1]:
                    return value_key
        return None

    def _copy(self, value: Any, state: dict[int, Any], depth: int) -> Any:
        """Recursive copy for the usual, shallow case. ``state`` maps the id of each container to
        ``_ACTIVE`` while it is being copied (a reference back to it is a cycle) and to its copy once done
        (a container shared by two parents is copied once). Past ``_RECURSION_DEPTH`` the subtree goes to
        the iterative :meth:`_walk`, with the same ``state``."""
        kind, result = self._classify(value)
        if kind == _LEAF:
            return result
        ident = id(value)
        seen = state.get(ident)
        if seen is _ACTIVE:
            return CYCLE
        if seen is not None:
            return seen
        if depth >= _RECURSION_DEPTH:
            return self._walk(value, state)
        state[ident] = _ACTIVE
        rstr = self.redact_str
        passthrough = _PASSTHROUGH
        depth += 1
        if kind == _DICT:
            key_cache = self._key_cache
            force = self._forced(value)
            out: dict[Any, Any] = {}
            for k, v in value.items():
                hit = key_cache.get(k) if type(k) is str else None
                nk, sensitive = hit if hit is not None else self._any_key(k)
                if nk is not k and nk in out:
                    nk = _unique(nk, out)
                if sensitive or (force is not None and k == force):
                    out[nk] = REDACTED
                    continue
                t = type(v)
                if t is str:
                    out[nk] = rstr(v)
                elif t in passthrough:
                    out[nk] = v
                else:
                    out[nk] = self._copy(v, state, depth)
            result = out
        else:
            items: list[Any] = []
            append = items.append
            for v in value:
                t = type(v)
                if t is str:
                    append(rstr(v))
                elif t in passthrough:
                    append(v)
                else:
                    append(self._copy(v, state, depth))
            result = _finish(kind, items)
        state[ident] = result
        return result

    def _open(self, value: Any, stack: list[list[Any]], state: dict[int, Any]) -> Any:
        """For :meth:`_walk`: a finished result, or ``_PUSHED`` after pushing a frame for a container."""
        kind, result = self._classify(value)
        if kind == _LEAF:
            return result
        ident = id(value)
        seen = state.get(ident)
        if seen is _ACTIVE:
            return CYCLE
        if seen is not None:
            return seen
        state[ident] = _ACTIVE
        if kind == _DICT:
            stack.append([_DICT, ident, {}, iter(value.items()), None, self._forced(value)])
        else:
            stack.append([kind, ident, [], iter(value), None, None])
        return _PUSHED

    def _walk(self, root: Any, state: dict[int, Any]) -> Any:
        """Iterative depth-first copy with an explicit stack: depth is bounded only by memory.

        A frame is ``[kind, id(source), output, iterator, pending key, forced key]``; ``state`` is as in
        :meth:`_copy`. A frame's loop breaks when it pushes a child; the child's copy is handed back to it
        when the child's frame finishes, and its iterator resumes where it stopped.
        """
        stack: list[list[Any]] = []
        result = self._open(root, stack, state)
        if result is not _PUSHED:
            return result
        rstr = self.redact_str
        key_cache = self._key_cache
        slow_key = self._any_key
        open_ = self._open
        passthrough = _PASSTHROUGH
        while True:
            frame = stack[-1]
            kind, out, it = frame[0], frame[2], frame[3]
            if kind == _DICT:
                force = frame[5]
                for k, v in it:
                    hit = key_cache.get(k) if type(k) is str else None
                    nk, sensitive = hit if hit is not None else slow_key(k)
                    if nk is not k and nk in out:
                        nk = _unique(nk, out)
                    if sensitive or (force is not None and k == force):
                        out[nk] = REDACTED
                        continue
                    t = type(v)
                    if t is str:
                        out[nk] = rstr(v)
                    elif t in passthrough:
                        out[nk] = v
                    else:
                        r = open_(v, stack, state)
                        if r is _PUSHED:
                            frame[4] = nk
                            break
                        out[nk] = r
                else:
                    result = out
            else:
                append = out.append
                for v in it:
                    t = type(v)
                    if t is str:
                        append(rstr(v))
                    elif t in passthrough:
                        append(v)
                    else:
                        r = open_(v, stack, state)
                        if r is _PUSHED:
                            break
                        append(r)
                else:
                    result = _finish(kind, out)
            if stack[-1] is not frame:  # a child container was pushed: descend into it
                continue
            # The frame is finished: remember its copy and hand it to its parent.
            stack.pop()
            state[frame[1]] = result
            if not stack:
                return result
            parent = stack[-1]
            if parent[0] == _DICT:
                parent[2][parent[4]] = result
            else:
                parent[2].append(result)


def _finish(kind: int, items: list[Any]) -> Any:
    if kind == _LIST:
        return items
    if kind == _TUPLE:
        return tuple(items)
    if kind == _SET:
        return set(items)
    return frozenset(items)


def _unique(key: Any, out: dict[Any, Any]) -> str:
    """A key not yet in ``out``: two keys redacted to the same text must not overwrite each other."""
    n = 2
    while f"{key}#{n}" in out:
        n += 1
    return f"{key}#{n}"


def _apply(text: str, spans: list[tuple[int, int]]) -> str:
    """Replace the union of ``spans`` with one marker per merged run."""
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


def _variants(value: str) -> set[str]:
    """The forms a secret takes in serialised output: raw, stripped, JSON-escaped, URL-quoted, base64."""
    out = {value, value.strip()}
    out.add(json.dumps(value)[1:-1])
    out.add(json.dumps(value, ensure_ascii=False)[1:-1])
    out.add(urllib.parse.quote(value, safe=""))
    out.add(urllib.parse.quote_plus(value, safe=""))
    raw = value.encode("utf-8", "surrogatepass")
    out.add(base64.b64encode(raw).decode("ascii").rstrip("="))
    out.add(base64.urlsafe_b64encode(raw).decode("ascii").rstrip("="))
    return out


def _compile_secrets(values: frozenset[str], min_length: int) -> re.Pattern[str] | None:
    """One alternation of every form of every secret, longest first; ``None`` when there are none."""
    forms = {form for v in values for form in _variants(v) if len(form) >= min_length}
    if not forms:
        return None
    return re.compile("|".join(re.escape(f) for f in sorted(forms, key=lambda f: (-len(f), f))))


#: The module default: builtin keys and patterns, no literal secrets.
default_redactor: Final = Redactor()


def redact(data: Any) -> Any:
    """A redacted copy of ``data`` with the default rules (see :class:`Redactor`)."""
    return default_redactor.redact(data)

"""The :class:`Redactor`: one immutable redaction policy (keys, patterns, literal secrets) and its caches.

It decides keys and strings itself; structures (dicts, lists, tuples, sets, cycles, any depth) are walked
by :mod:`automate.core.redaction.walker` with its rules. See :mod:`automate.core.redaction` for the rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from automate.core.redaction.keys import is_sensitive_key, normalize_key
from automate.core.redaction.literals import DEFAULT_MIN_SECRET_LENGTH, compile_secrets
from automate.core.redaction.patterns import KV_ANCHORS, MIN_PATTERN_LEN, apply_spans, builtin_spans
from automate.core.redaction.walker import PASSTHROUGH, copy_tree, walk

__all__ = ["Redactor"]

_CACHE_MAX: Final = 16384  # entries in each per-redactor cache (key decisions, strings known to be clean)
_CLEAN_MAX_LEN: Final = 256  # only strings up to this length are remembered


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
        init(self, "_anchors", tuple(dict.fromkeys(KV_ANCHORS + tuple(k[:3] for k in keys))))
        init(self, "_secret_rx", compile_secrets(values, min_secret_length))
        init(self, "_min_scan", 1 if user_rx else min(MIN_PATTERN_LEN, min_secret_length))
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
        return apply_spans(text, spans)

    def _pattern_spans(self, text: str, spans: list[tuple[int, int]]) -> None:
        """Add the (start, end) spans the key and value patterns find; spans may overlap (merged later)."""
        if len(text) >= MIN_PATTERN_LEN:
            builtin_spans(text, spans, self._anchors, self._key)
        for user in self._user_rx:
            has_group = "secret" in user.groupindex
            for m in user.finditer(text):
                if has_group and m.start("secret") != -1:
                    spans.append(m.span("secret"))
                elif m.end() > m.start():
                    spans.append(m.span())

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
        if t in PASSTHROUGH:
            return data
        try:
            return copy_tree(self, data, {}, 0)
        except RecursionError:  # called with little stack left: start again without recursion
            return self._walk(data, {})

    __call__ = redact

    def _walk(self, root: Any, state: dict[int, Any]) -> Any:
        """The iterative copy (:func:`~automate.core.redaction.walker.walk`), for values too deep to
        recurse into: ``state`` is shared with the recursive copy that hands a subtree over."""
        return walk(self, root, state)

"""The sensitive-key rule: which mapping keys hold a value that is redacted whole.

A key is *normalised* (lower case, every non-alphanumeric character removed: ``X-Api-Key`` is ``xapikey``)
and is sensitive when it is one of :data:`EXACT_KEYS`, or when it contains one of
:data:`SENSITIVE_SUBSTRINGS` once the phrases matched by :data:`EXEMPT_RE` (metadata about tokens, names of
secrets) are removed. See :mod:`automate.core.redaction` for the whole rule and its reasons.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["EXACT_KEYS", "EXEMPT_RE", "SENSITIVE_SUBSTRINGS", "is_sensitive_key", "normalize_key"]

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

"""Run-scoped literal secrets: every form a secret value takes in serialised output, as one regex.

A run's redactor scrubs each resolved secret wherever it appears, also JSON-escaped, URL-quoted or
base64-encoded. Values shorter than the minimum length are not scrubbed as literals (scrubbing ``"abc"``
everywhere would destroy unrelated output); key names and patterns still catch them.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from typing import Final

__all__ = ["DEFAULT_MIN_SECRET_LENGTH", "compile_secrets"]

DEFAULT_MIN_SECRET_LENGTH: Final = 4


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


def compile_secrets(values: frozenset[str], min_length: int) -> re.Pattern[str] | None:
    """One alternation of every form of every secret, longest first; ``None`` when there are none."""
    forms = {form for v in values for form in _variants(v) if len(form) >= min_length}
    if not forms:
        return None
    return re.compile("|".join(re.escape(f) for f in sorted(forms, key=lambda f: (-len(f), f))))

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
   no value). Only the sensitive span is replaced. In free text a name is found through one of
   :data:`patterns.KV_ANCHORS <automate.core.redaction.patterns.KV_ANCHORS>` (``pass``, ``token``, ``key``,
   ``sess``...) and widened to the whole name around it; an extra key is found through its first three letters.

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
shared in the copy too. **No depth limit and no RecursionError**: the first ``walker.RECURSION_DEPTH``
levels are copied by recursion (fastest), anything deeper by an iterative walker with an explicit stack,
and if the caller has little stack left the whole value is copied iteratively; a 100 000-deep list is
redacted in full. Scalars (numbers, booleans, ``None``, dates, UUIDs, Decimals, enums) are returned as they are; any
other object becomes the redacted ``str()`` of it, so nothing reaches a sink that the redactor has not
seen. Dict keys that become equal after redaction are kept apart with a ``#2`` suffix.

Modules: ``keys`` (the key rule), ``patterns`` (value patterns and span replacement), ``literals``
(run-scoped secrets), ``redactor`` (:class:`Redactor`: the policy, its caches, keys and strings) and
``walker`` (the structure copy). Import from this package; the modules are its implementation.
"""

from __future__ import annotations

from typing import Any, Final

from automate.core.redaction.keys import EXACT_KEYS, EXEMPT_RE, SENSITIVE_SUBSTRINGS, is_sensitive_key, normalize_key
from automate.core.redaction.literals import DEFAULT_MIN_SECRET_LENGTH
from automate.core.redaction.patterns import REDACTED
from automate.core.redaction.redactor import Redactor
from automate.core.redaction.walker import CYCLE

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

#: The module default: builtin keys and patterns, no literal secrets.
default_redactor: Final = Redactor()


def redact(data: Any) -> Any:
    """A redacted copy of ``data`` with the default rules (see :class:`Redactor`)."""
    return default_redactor.redact(data)

"""``apply`` and ``evaluate`` over a bounded LRU cache of compiled rules.

The cache key is the rule's canonical JSON (orjson, sorted keys; a BLAKE2b digest of it for huge
rules), so equal rules share one compiled closure whatever their key order or object identity. The
dict hashes the key, and compares it in full on a hash match, so two rules never share an entry by
accident. The cache is LRU, bounded in entries and in key bytes. A rule orjson cannot serialise
(non-string keys, very large ints, exotic types) is compiled without caching, which also makes
validation report it properly.

For a hot loop over one rule, ``get_compiled(rule)`` once and call the result: that skips the
canonical JSON, which for a rule of a few hundred nodes costs about as much as evaluating it.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import orjson

from automate.core.rules.coerce import truthy
from automate.core.rules.compiler import CompiledRule, compile_rule, recursion_error
from automate.core.rules.limits import DEFAULT_LIMITS, Limits

__all__ = ["CACHE_SIZE", "apply", "cache_clear", "cache_info", "evaluate", "get_compiled"]

CACHE_SIZE = 2048
"""Most compiled rules kept."""
CACHE_KEY_BYTES = 32 * 1024 * 1024
"""Most bytes of cache keys kept (the canonical JSON of the cached rules)."""
_DIGEST_OVER = 64 * 1024  # a key longer than this is replaced by its 20-byte BLAKE2b digest

_cache: OrderedDict[Any, CompiledRule] = OrderedDict()
_lock = threading.Lock()
_stats = {"misses": 0, "key_bytes": 0}


# Canonical JSON, so equal rules share an entry whatever their identity or key order. A value orjson
# serialises that JSON does not have (a datetime, a UUID) is keyed by its JSON form; the validation on
# a miss still refuses it. Non-finite floats are keyed as null (orjson's choice).
_dumps = orjson.dumps
_SORT_KEYS = orjson.OPT_SORT_KEYS
_lookup = _cache.get
_touch = _cache.move_to_end


def _long_key(key: bytes, limits: Limits) -> Any:
    if len(key) > _DIGEST_OVER:
        key = hashlib.blake2b(key, digest_size=20).digest()
    return key if limits is DEFAULT_LIMITS else (key, limits)


def _key_size(key: Any) -> int:
    return len(key if isinstance(key, bytes) else key[0])


def get_compiled(rule: Any, limits: Limits = DEFAULT_LIMITS) -> CompiledRule:
    """The compiled form of ``rule``, from the cache when an equal rule was compiled before."""
    try:
        key: Any = _dumps(rule, option=_SORT_KEYS)
    except TypeError:  # not serialisable: compile (and so validate) without caching
        return compile_rule(rule, limits=limits)
    if limits is not DEFAULT_LIMITS or len(key) > _DIGEST_OVER:
        key = _long_key(key, limits)
    compiled = _lookup(key)
    if compiled is None:
        return _compile_and_store(rule, key, limits)
    try:  # noqa: SIM105 - hot path: contextlib.suppress costs more than the lookup itself
        _touch(key)
    except KeyError:  # evicted by another thread meanwhile: still a valid compiled rule
        pass
    return compiled


def _compile_and_store(rule: Any, key: Any, limits: Limits) -> CompiledRule:
    compiled = compile_rule(rule, limits=limits)  # raises for an invalid rule: nothing is cached
    with _lock:
        _stats["misses"] += 1
        if key not in _cache:
            _stats["key_bytes"] += _key_size(key)
        _cache[key] = compiled
        while len(_cache) > CACHE_SIZE or _stats["key_bytes"] > CACHE_KEY_BYTES:
            evicted, _ = _cache.popitem(last=False)
            _stats["key_bytes"] -= _key_size(evicted)
    return compiled


def cache_info() -> dict[str, int]:
    """Size, capacity, key bytes held and compilations so far (misses) of the compiled-rule cache."""
    return {"size": len(_cache), "capacity": CACHE_SIZE, "key_bytes": _stats["key_bytes"], "misses": _stats["misses"]}


def cache_clear() -> None:
    with _lock:
        _cache.clear()
        _stats["misses"] = 0
        _stats["key_bytes"] = 0


# apply and evaluate repeat get_compiled's fast path inline: they are the hot path of trigger matching,
# and a Python call costs about as much as the dict lookup it would wrap.


def apply(rule: Any, data: Any = None, *, limits: Limits = DEFAULT_LIMITS) -> Any:
    """The raw JSONLogic value of ``rule`` for ``data`` (a JSON value: usually a dict)."""
    compiled = get_compiled(rule, limits)
    try:
        return compiled.run(data)
    except RecursionError:
        raise recursion_error() from None


def evaluate(rule_spec: Any, context: Any = None, *, limits: Limits = DEFAULT_LIMITS) -> bool:
    """Whether ``context`` matches ``rule_spec``: JSONLogic truthiness of ``apply``."""
    compiled = get_compiled(rule_spec, limits)
    try:
        value = compiled.run(context)
    except RecursionError:
        raise recursion_error() from None
    return value if (value is True or value is False) else truthy(value)

"""``apply`` and ``evaluate`` over a bounded LRU cache of compiled rules.

The cache key is the rule's canonical JSON (orjson, sorted keys), replaced by its BLAKE2b digest when
long, so equal rules share one compiled closure whatever their key order or object identity. A rule
orjson cannot serialise (non-string keys, very large ints, exotic types) is compiled without caching,
which also makes validation report it properly.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import orjson

from automate.core.rules.coerce import truthy
from automate.core.rules.compiler import CompiledRule, compile_rule
from automate.core.rules.limits import DEFAULT_LIMITS, Limits

__all__ = ["CACHE_SIZE", "apply", "cache_clear", "cache_info", "evaluate", "get_compiled"]

CACHE_SIZE = 2048
_DIGEST_OVER = 4096  # keys longer than this many bytes are stored as a 20-byte BLAKE2b digest
_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)

_cache: OrderedDict[Any, CompiledRule] = OrderedDict()
_lock = threading.Lock()
_stats = {"hits": 0, "misses": 0}


def _key(rule: Any, limits: Limits) -> Any:
    try:
        key: Any = orjson.dumps(rule, option=_OPTIONS)
    except TypeError:
        return None
    if len(key) > _DIGEST_OVER:
        key = hashlib.blake2b(key, digest_size=20).digest()
    return key if limits is DEFAULT_LIMITS else (key, limits)


def get_compiled(rule: Any, *, limits: Limits = DEFAULT_LIMITS) -> CompiledRule:
    """The compiled form of ``rule``, from the cache when an equal rule was compiled before."""
    key = _key(rule, limits)
    if key is None:
        return compile_rule(rule, limits=limits)
    compiled = _cache.get(key)
    if compiled is not None:
        try:  # noqa: SIM105 - hot path: contextlib.suppress costs more than the lookup itself
            _cache.move_to_end(key)
        except KeyError:  # evicted by another thread meanwhile: still a valid compiled rule
            pass
        return compiled
    compiled = compile_rule(rule, limits=limits)  # raises for an invalid rule: nothing is cached
    with _lock:
        _stats["misses"] += 1
        _cache[key] = compiled
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return compiled


def cache_info() -> dict[str, int]:
    """Current size, capacity and number of compilations (misses) of the compiled-rule cache."""
    return {"size": len(_cache), "capacity": CACHE_SIZE, "misses": _stats["misses"]}


def cache_clear() -> None:
    with _lock:
        _cache.clear()
        _stats["misses"] = 0


def apply(rule: Any, data: Any = None, *, limits: Limits = DEFAULT_LIMITS) -> Any:
    """The raw JSONLogic value of ``rule`` for ``data`` (a JSON value: usually a dict)."""
    return get_compiled(rule, limits=limits)(data)


def evaluate(rule_spec: Any, context: Any = None, *, limits: Limits = DEFAULT_LIMITS) -> bool:
    """Whether ``context`` matches ``rule_spec``: JSONLogic truthiness of ``apply``."""
    value = get_compiled(rule_spec, limits=limits)(context)
    return value if (value is True or value is False) else truthy(value)

"""Retry delays: exponential or fixed backoff with full jitter, and ``Retry-After`` parsing.

Pure and deterministic given the ``rng``: pass ``random.Random(seed)`` in tests. Attempts count from 1
(the first retry waits about ``base_seconds``). Every delay :func:`compute_delay` returns lies in
``[0, policy.max_seconds]``; a server's ``Retry-After`` raises the delay (it is a floor, never jittered)
but is still capped by ``max_seconds``: raise ``max_seconds`` to honour longer server requests.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from automate.core.specs import BackoffPolicy, parse_backoff_policy

__all__ = ["Uniform", "compute_delay", "retry_after_seconds"]

# RFC 9110 says delta-seconds is 1*DIGIT; a decimal fraction is tolerated because some servers send it.
# The length bound keeps float() away from absurd inputs.
_DELTA_SECONDS = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,9})?")


class Uniform(Protocol):
    """What :func:`compute_delay` needs from a random source (``random`` or ``random.Random(seed)``)."""

    def uniform(self, a: float, b: float) -> float: ...


def _policy(policy_or_params: BackoffPolicy | Mapping[str, Any] | None) -> BackoffPolicy:
    if policy_or_params is None:
        return BackoffPolicy()
    if isinstance(policy_or_params, BackoffPolicy):
        return policy_or_params
    return parse_backoff_policy(policy_or_params)


def _ceiling(policy: BackoffPolicy, attempt: int) -> float:
    """The un-jittered delay of ``attempt``, capped at ``max_seconds``."""
    if policy.kind == "fixed":
        return min(policy.base_seconds, policy.max_seconds)
    try:
        raw = policy.base_seconds * math.pow(2.0, attempt - 1)
    except OverflowError:
        return policy.max_seconds
    return min(raw, policy.max_seconds)


def compute_delay(
    policy_or_params: BackoffPolicy | Mapping[str, Any] | None,
    attempt: int,
    rng: Uniform = random,
    *,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based).

    ``exponential``: ``cap = min(max_seconds, base_seconds * 2 ** (attempt - 1))``;
    ``fixed``: ``cap = base_seconds``. With ``jitter="full"`` the delay is ``rng.uniform(0, cap)``,
    with ``"none"`` it is ``cap``. ``retry_after`` (seconds, e.g. from :func:`retry_after_seconds`) is a
    floor on the result; the result never exceeds ``max_seconds``.

    ``policy_or_params`` is a :class:`BackoffPolicy`, a mapping of its fields (validated; ``SpecError``
    naming ``retry.<field>``), or ``None`` for the defaults.
    """
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"attempt must be an integer >= 1, got {attempt!r}")
    policy = _policy(policy_or_params)
    cap = _ceiling(policy, attempt)
    delay = rng.uniform(0.0, cap) if policy.jitter == "full" else cap
    if retry_after is not None and math.isfinite(retry_after) and retry_after > delay:
        delay = retry_after
    # uniform() may round to just past its bound; the contract is [0, max_seconds].
    return min(max(delay, 0.0), policy.max_seconds)


def retry_after_seconds(header_value: str | bytes | None, now: datetime | float | None = None) -> float | None:
    """Parse an HTTP ``Retry-After`` value into seconds from ``now``, or ``None`` if absent or invalid.

    Both forms of RFC 9110 are accepted: delta-seconds (``"120"``) and an HTTP-date
    (``"Sun, 06 Nov 1994 08:49:37 GMT"``, also the obsolete RFC 850 and asctime forms, read as UTC).
    A date in the past gives ``0.0``. Negative numbers, garbage and non-finite values give ``None``.
    ``now`` is an aware ``datetime`` (a naive one is read as UTC), a POSIX timestamp, or ``None`` for
    the current time.
    """
    if header_value is None:
        return None
    if isinstance(header_value, bytes):
        header_value = header_value.decode("latin-1")
    value = header_value.strip()
    if not value:
        return None
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)
    if value[0] in "+-" or value[0].isdigit():
        return None  # a signed or malformed number, not a date
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now is None:
        now_dt = datetime.now(UTC)
    elif isinstance(now, datetime):
        now_dt = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    else:
        now_dt = datetime.fromtimestamp(now, UTC)
    return max((when - now_dt).total_seconds(), 0.0)

"""Webhook signatures: HMAC-SHA256 over the timestamp, the delivery id and the raw body.

Pure Python (no Django): senders can import :func:`sign` without a Django project. The signed string is

    <timestamp> "." <delivery id> "." <raw body bytes>

and the signature header is ``v1=<hex digest>`` (several comma-separated ``v1=`` values are accepted,
so a sender can sign with an old and a new secret while a secret is rotated). The delivery id is signed
too: the receiver refuses a delivery id it has seen, and an unsigned id would let anyone who captured one
request replay it inside the replay window under a new id.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import uuid

from automate.core.errors import AutomateError

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SignatureError",
    "sign",
    "signature",
    "verify",
]

TIMESTAMP_HEADER = "X-Automate-Timestamp"
SIGNATURE_HEADER = "X-Automate-Signature"
DELIVERY_HEADER = "X-Automate-Delivery"
SCHEME = "v1"

#: What a delivery id may look like: a uuid, or any sender id of up to 200 safe characters.
DELIVERY_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,199}")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_HEX_RE = re.compile(r"[0-9a-f]{64}")
_MAX_SIGNATURES = 5


class SignatureError(AutomateError):
    """A delivery failed verification. ``reason`` is safe to log and audit: it never holds the
    signature, the body or the secret. ``status`` is the HTTP answer: 401 for a signature or timestamp
    that does not verify, 400 for a missing or malformed delivery id."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def signature(body: bytes, secret: str, timestamp: int, delivery_id: str) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.<delivery id>.<body>`` under ``secret``."""
    if not isinstance(body, bytes | bytearray):
        raise TypeError(f"body must be bytes, got {type(body).__name__}")
    if not isinstance(secret, str) or not secret:
        raise ValueError("the signing secret must be a non-empty string")
    message = f"{int(timestamp)}.{delivery_id}.".encode() + bytes(body)
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(
    body: bytes, secret: str, timestamp: int | None = None, *, delivery_id: str | None = None
) -> dict[str, str]:
    """The headers a sender adds to ``POST <prefix>/webhooks/<source>/`` with this exact ``body``.

    ``timestamp`` defaults to now (Unix seconds); ``delivery_id`` to a fresh uuid. A retry of the same
    delivery should reuse its delivery id (the receiver then answers ``400 duplicate delivery`` if the
    first attempt got through).
    """
    ts = int(time.time()) if timestamp is None else int(timestamp)
    delivery = str(uuid.uuid4()) if delivery_id is None else delivery_id
    if not DELIVERY_ID_RE.fullmatch(delivery):
        raise ValueError("delivery_id must be 1 to 200 letters, digits, '.', '_', ':' or '-'")
    return {
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: f"{SCHEME}={signature(body, secret, ts, delivery)}",
        DELIVERY_HEADER: delivery,
        "Content-Type": "application/json",
    }


def verify(
    body: bytes,
    secret: str,
    *,
    timestamp: str | None,
    signature_header: str | None,
    delivery_id: str | None,
    replay_window_seconds: int,
    now: float | None = None,
) -> int:
    """Check one delivery; return its timestamp, or raise :class:`SignatureError` with the reason.

    The signature is checked (in constant time) before the timestamp's age, so an unsigned request learns
    nothing about the replay window.
    """
    if not timestamp or not signature_header:
        raise SignatureError("missing signature")
    if not delivery_id:
        raise SignatureError("missing delivery id", 400)
    if not DELIVERY_ID_RE.fullmatch(delivery_id):
        raise SignatureError("malformed delivery id", 400)
    if not _TIMESTAMP_RE.fullmatch(timestamp):
        raise SignatureError("malformed timestamp")
    ts = int(timestamp)
    candidates = []
    for part in signature_header.split(",")[:_MAX_SIGNATURES]:
        scheme, _, value = part.strip().partition("=")
        if scheme == SCHEME and _HEX_RE.fullmatch(value):
            candidates.append(value)
    if not candidates:
        raise SignatureError("malformed signature")
    expected = signature(body, secret, ts, delivery_id)
    # Every candidate is compared, so the time taken does not say which one matched.
    matched = [hmac.compare_digest(expected, value) for value in candidates]
    if not any(matched):
        raise SignatureError("bad signature")
    current = time.time() if now is None else now
    if abs(current - ts) > replay_window_seconds:
        raise SignatureError("timestamp outside the replay window")
    return ts

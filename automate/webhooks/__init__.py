"""Signed webhooks: :func:`sign` for senders (no Django needed), the receiving view in ``views``.

``include("automate.urls")`` serves ``POST …/webhooks/<source>/``; see ``automate.webhooks.views``.
"""

from .signing import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, sign, verify

__all__ = ["DELIVERY_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "SignatureError", "sign", "verify"]

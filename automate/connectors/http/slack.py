"""The ``slack`` step type: a message to a Slack incoming webhook, over the guarded client.

    {"type": "slack", "config": {
        "webhook_url": "$secret:SLACK_WEBHOOK",
        "text": "Order {{ event.payload.id }} shipped",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*Shipped*"}}]}}

Output: ``{"status": 200, "ok": true}``. Non-2xx replies are judged like the ``http`` step's (5xx and 429
retried, other 4xx permanent); Slack's error word (``invalid_payload``, ``channel_not_found``) is kept in
the message. The webhook URL is a credential: no message, output or audit entry quotes it (errors say
"slack webhook"; an SSRF refusal names only its host).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from automate.core.errors import SpecError

from ..base import PermanentStepError, StepContext, reject_unknown_keys
from .http import build_headers, is_dynamic

__all__ = ["SlackConnector"]

_KEYS = ("webhook_url", "text", "blocks")
_SLACK_ERROR = re.compile(rb"[a-z_]{1,64}")
LABEL = "slack webhook"


def _label(method: str, url: str) -> str:
    return LABEL


class SlackConnector:
    """Posts ``{"text": ..., "blocks": [...]}`` to an incoming webhook (see the module docstring)."""

    code: ClassVar[str] = "slack"
    needs_network: ClassVar[bool] = True
    is_llm: ClassVar[bool] = False

    def validate_config(self, config: Mapping[str, Any], *, path: str) -> None:
        reject_unknown_keys(config, _KEYS, path=path)
        url = config.get("webhook_url")
        if not isinstance(url, str) or not url.strip():
            raise SpecError(f"{path}.webhook_url: required (a string, usually '$secret:SLACK_WEBHOOK')")
        if not is_dynamic(url) and not re.match(r"https?://", url.strip(), re.IGNORECASE):
            raise SpecError(f"{path}.webhook_url: must be an http(s) URL (store it as a secret: '$secret:NAME')")
        if "text" not in config and "blocks" not in config:
            raise SpecError(f"{path}: give 'text', 'blocks' or both")
        if "text" in config and not isinstance(config["text"], str):
            raise SpecError(f"{path}.text: must be a string")
        blocks = config.get("blocks")
        if blocks is not None and not is_dynamic(blocks) and not isinstance(blocks, list):
            raise SpecError(f"{path}.blocks: must be a list of Block Kit blocks")

    async def run(self, config: Mapping[str, Any], ctx: StepContext) -> Any:
        from automate.conf import get_settings

        from .fetch import fetch, raise_for_status  # httpx is imported on first use, not at registration

        url = config.get("webhook_url")
        if not isinstance(url, str):
            raise PermanentStepError(f"{LABEL}: config.webhook_url must be a string")
        message: dict[str, Any] = {}
        if "text" in config:
            if not isinstance(config["text"], str):
                raise PermanentStepError(f"{LABEL}: config.text must be a string")
            message["text"] = config["text"]
        if config.get("blocks") is not None:
            if not isinstance(config["blocks"], list):
                raise PermanentStepError(f"{LABEL}: config.blocks must be a list of blocks")
            message["blocks"] = config["blocks"]
        headers = build_headers({"Content-Type": "application/json"}, ctx, get_settings().HTTP.user_agent, LABEL)
        reply = await fetch("POST", url, headers=headers, ctx=ctx, labeller=_label, content=orjson.dumps(message))
        if not 200 <= reply.status < 300:
            word = reply.body.strip()
            detail = f" ({word.decode()})" if _SLACK_ERROR.fullmatch(word) else ""
            raise_for_status(reply.status, reply.headers, LABEL, detail)
            raise PermanentStepError(f"{LABEL}: HTTP {reply.status}{detail}")  # a 1xx/3xx final answer
        return {"status": reply.status, "ok": True}

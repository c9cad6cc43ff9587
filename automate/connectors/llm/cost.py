"""What an LLM call may cost, before it is made (an upper bound), and what it did cost (from ``usage``).

Money is ``Decimal`` USD with 6 decimal places (the database's numeric(12,6)), always rounded up, so
neither a bound nor a cost is ever under-counted.

The prompt bound needs no tokenizer: byte-level BPE tokenizers (OpenAI's, Llama 3's, most others) turn
every token into at least one byte of text, so a text has at most as many tokens as it has UTF-8 bytes.
Each message then costs a few formatting tokens (OpenAI documents 3 per message, 1 per name and 3 to prime
the reply); the bound allows 8 per message and 8 more. It is a loose bound (English text runs about 4
bytes per token), which only means that a call must fit with room to spare before it is made; the spend
itself is settled to the ``usage`` the provider reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

__all__ = ["MESSAGE_OVERHEAD_TOKENS", "Price", "money", "prompt_token_bound"]

MESSAGE_OVERHEAD_TOKENS = 8  # per message, and once more for the reply's priming
_MICRO = Decimal("0.000001")
_THOUSAND = Decimal(1000)


def money(value: Decimal) -> Decimal:
    """``value`` rounded up to the micro-dollar (the precision stored)."""
    return value.quantize(_MICRO, rounding=ROUND_CEILING)


def _text_bytes(content: Any) -> int:
    if isinstance(content, str):
        return len(content.encode("utf-8", "surrogatepass"))
    if isinstance(content, Sequence):  # text parts: [{"type": "text", "text": "..."}]
        return sum(_text_bytes(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return 0


def prompt_token_bound(messages: Sequence[Mapping[str, Any]]) -> int:
    """At most this many prompt tokens: the UTF-8 bytes of every role, name and text, plus overhead."""
    total = MESSAGE_OVERHEAD_TOKENS
    for message in messages:
        total += MESSAGE_OVERHEAD_TOKENS
        for key in ("role", "name", "content"):
            total += _text_bytes(message.get(key, ""))
    return total


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1,000 tokens, from ``DJANGO_AUTOMATE.LLM.prices[model]`` (floats there, exact here)."""

    input_per_1k: Decimal
    output_per_1k: Decimal

    @classmethod
    def of(cls, setting: Any) -> Price:
        return cls(Decimal(str(setting.input_per_1k)), Decimal(str(setting.output_per_1k)))

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        raw = (prompt_tokens * self.input_per_1k + completion_tokens * self.output_per_1k) / _THOUSAND
        return money(raw)

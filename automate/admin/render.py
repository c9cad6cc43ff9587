"""HTML for the admin's read-only displays: the step timeline of a run and the rule tester's tree.

Everything shown comes from untrusted places (event payloads, step outputs, error messages, rules), so
every value goes through ``format_html``/``escape``; nothing is marked safe that was not built here.
Outputs are stored redacted; they are redacted once more for display (a key named like a secret).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

__all__ = ["explain_tree", "json_preview", "step_timeline"]

MAX_SHOWN_CHARS = 4_000


def json_preview(value: Any, limit: int = MAX_SHOWN_CHARS) -> SafeString:
    """A value as indented JSON in a ``<pre>``, redacted, escaped and cut at ``limit`` characters."""
    from automate.secrets import redact

    if value is None:
        return format_html('<span class="automate-none">{}</span>', "—")
    try:
        text = json.dumps(redact(value), indent=1, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    more = ""
    if len(text) > limit:
        more = f"\n… ({len(text) - limit} more characters)"
        text = text[:limit]
    return format_html('<pre class="automate-json">{}{}</pre>', text, more)


def _duration(started: datetime | None, finished: datetime | None) -> str:
    if started is None or finished is None:
        return ""
    ms = (finished - started).total_seconds() * 1000
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def _time(value: datetime | None) -> SafeString | str:
    """The time of day to the millisecond; the whole timestamp in the title."""
    if value is None:
        return ""
    return format_html('<span title="{}">{}</span>', value.isoformat(), value.strftime("%H:%M:%S.%f")[:-3])


def step_timeline(steps: Iterable[Any]) -> SafeString:
    """A table of a run's StepRun rows (one per attempt), in the order they started."""
    rows = sorted(steps, key=_sort_key)
    if not rows:
        return format_html('<p class="automate-timeline-empty">{}</p>', "No step has been recorded yet.")
    body = format_html_join(
        "\n",
        '<tr class="automate-step automate-step-{}"><td>{}</td><td>{}</td><td><span class="automate-status">{}'
        '</span></td><td class="automate-time">{}</td><td class="automate-time">{}</td><td>{}</td>'
        '<td class="automate-output">{}{}</td></tr>',
        (
            (
                s.status.lower(), s.step_id, s.attempt, s.status, _time(s.started_at), _time(s.finished_at),
                _duration(s.started_at, s.finished_at), json_preview(s.output) if s.output is not None or not s.error
                else "", format_html('<pre class="automate-error">{}</pre>', s.error) if s.error else "",
            )
            for s in rows
        ),
    )
    head = mark_safe(  # a constant
        "<thead><tr><th>step</th><th>attempt</th><th>status</th><th>started</th><th>finished</th>"
        "<th>duration</th><th>output (redacted) or error</th></tr></thead>"
    )
    return format_html('<table class="automate-timeline">{}<tbody>{}</tbody></table>', head, body)


def _sort_key(step: Any) -> tuple[str, str, int]:
    at = step.started_at or step.finished_at
    return (at.isoformat() if at else "~", step.step_id, step.attempt)


def _mark(node: dict[str, Any]) -> tuple[str, str]:
    if not node.get("evaluated", True) or node.get("passed") is None:
        return "skipped", "\u2013"
    return ("passed", "✓") if node.get("passed") else ("failed", "✗")


def short_json(value: Any, limit: int = 200) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def explain_tree(node: dict[str, Any], depth: int = 0) -> SafeString:
    """The ``automate.rules.explain`` tree as nested lists; each node marked passed (✓), failed (✗) or not
    evaluated (a dash), with a CSS class of the same name."""
    css, mark = _mark(node)
    if node.get("kind") == "op":
        label = format_html('<code class="automate-op">{}</code>', node.get("op", "?"))
    elif node.get("kind") == "array":
        label = format_html('<code class="automate-op">{}</code>', "[ ]")
    else:
        label = format_html('<code class="automate-literal">{}</code>', short_json(node.get("value")))
    value = ""
    if node.get("kind") != "literal" and node.get("evaluated", True):
        value = format_html(' <span class="automate-value">= {}</span>', short_json(node.get("value")))
    children: list[SafeString] = []
    if depth < 60:
        children = [explain_tree(child, depth + 1) for child in node.get("args") or []]
        for item in (node.get("iterations") or [])[:10]:
            if isinstance(item, dict) and isinstance(item.get("node"), dict):
                children.append(format_html(
                    '<li class="automate-iteration">item [{}]<ul>{}</ul></li>',
                    item.get("index"), explain_tree(item["node"], depth + 1),
                ))
    inner = format_html("<ul>{}</ul>", format_html_join("", "{}", ((c,) for c in children))) if children else ""
    return format_html(
        '<li class="automate-node {}" data-path="{}"><span class="automate-mark" title="{}">{}</span> {}{} '
        '<span class="automate-path">{}</span>{}</li>',
        css, node.get("path", ""), css, mark, label, value, node.get("path", ""), inner,
    )

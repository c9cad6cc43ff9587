"""Render step configs against a run's context: ``{{ dotted.path }}``, ``{"$expr": rule}`` and secrets.

The grammar is deliberately tiny; nothing here evaluates code (no ``eval``, no Jinja, no attribute access):

- ``{{ event.payload.order.id }}``: a dotted path looked up in the context through dict keys and
  list indexes (a segment of digits indexes a list). Whitespace inside the braces is optional. A segment
  is any run of characters other than whitespace, ``.``, ``{`` and ``}``.
- A string that is exactly one template (nothing around the braces) is replaced by the value itself and
  keeps its type (number, object, list, ``null``...). Templates inside a longer string are interpolated:
  strings as is, ``null`` as ``""``, booleans as ``true``/``false``, numbers as JSON writes them,
  objects and lists as compact JSON.
- ``{"$expr": <JSONLogic rule>}`` (a dict whose only key is ``$expr``) is replaced by
  ``rules.apply(rule, context)``. Strings inside the rule are not templated, so ``{"$expr": "{{ x }}"}``
  is the way to write a literal ``{{``.
- ``$secret:NAME`` tokens (``NAME`` is ``[A-Za-z_][A-Za-z0-9_]*``), the whole string or inside a longer
  one, are resolved last, after every template rendered, and only when ``resolve_secret`` is given;
  without it they are left as written, so validation and dry runs never touch a secret. Only tokens
  written literally in the config are resolved: text that comes from the context (an event payload, a
  step output, an ``$expr`` result) is never scanned again, so an untrusted payload cannot name a secret
  or inject a template.
- Dict keys are never templated. Tuples come back as lists.

Limits against hostile configs or payloads: structures nested deeper than :data:`MAX_DEPTH` and renders
producing more than :data:`MAX_OUTPUT_SIZE` characters (counted over everything templates and
expressions insert) raise :class:`TemplateError`.

Modules: ``parsing`` (what a config says without a context: templates, secret tokens, references,
locations; for save-time checks) and ``rendering`` (:func:`render` against a run's context). Import from
this package; the modules are its implementation.
"""

from automate.core.templating.parsing import (
    MAX_DEPTH,
    Reference,
    TemplateSyntaxError,
    find_references,
    format_location,
    referenced_paths,
    referenced_secrets,
)
from automate.core.templating.parsing import Loc as Loc  # a config location, for annotations
from automate.core.templating.rendering import MAX_OUTPUT_SIZE, copy_constant, is_constant, render

__all__ = [
    "MAX_DEPTH",
    "MAX_OUTPUT_SIZE",
    "Reference",
    "TemplateSyntaxError",
    "copy_constant",
    "find_references",
    "format_location",
    "is_constant",
    "referenced_paths",
    "referenced_secrets",
    "render",
]

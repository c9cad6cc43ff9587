"""Public rules API: JSONLogic ``apply``/``evaluate``/``explain``/``validate`` (``automate.core.rules``).

``evaluate(rule_spec, context) -> bool`` is what trigger matching uses; ``explain`` shows exactly which
condition passed or failed; ``validate`` raises ``RuleError`` naming the JSON path of a bad node.
"""

from automate.core.errors import RuleError, RuleLimitError
from automate.core.rules import (
    CompiledRule,
    Limits,
    apply,
    compile_rule,
    evaluate,
    explain,
    explain_text,
    get_compiled,
    validate,
)

__all__ = [
    "CompiledRule",
    "Limits",
    "RuleError",
    "RuleLimitError",
    "apply",
    "compile_rule",
    "evaluate",
    "explain",
    "explain_text",
    "get_compiled",
    "validate",
]

"""The JSONLogic rules engine: pure Python, compiled to closures, bounded against abusive rules.

``apply`` returns a rule's raw JSONLogic value, ``evaluate`` its truthiness, ``explain`` a tree of
every operator's value, ``validate`` checks a rule without running it. See ``automate.rules``.
"""

from automate.core.errors import RuleError, RuleLimitError
from automate.core.rules.compiler import CompiledRule, compile_rule
from automate.core.rules.engine import apply, cache_clear, cache_info, evaluate, get_compiled
from automate.core.rules.explain import explain
from automate.core.rules.limits import DEFAULT_LIMITS, Limits
from automate.core.rules.ops import ARITY
from automate.core.rules.render import explain_text
from automate.core.rules.validate import validate

__all__ = [
    "ARITY",
    "DEFAULT_LIMITS",
    "CompiledRule",
    "Limits",
    "RuleError",
    "RuleLimitError",
    "apply",
    "cache_clear",
    "cache_info",
    "compile_rule",
    "evaluate",
    "explain",
    "explain_text",
    "get_compiled",
    "validate",
]

"""Detection engine: Sigma 2.1 rules and correlations compiled and evaluated in-process.

::

    report = load_rules([Path("rules")], extra_paths=[Path("/opt/sigma/rules/linux")])
    engine = Engine(report.ruleset, metrics, EngineOptions())
    alerts = engine.process(event)      # per event
    alerts += engine.advance(now)       # timers, every second
    engine.swap(new_report.ruleset)     # hot reload; unchanged rules keep their state

pySigma parses, maps and validates rules at load time only; evaluation is our own compiled code.
See ``docs/rules.md``.
"""

from agent.detection.engine import SUPPRESSION_RULE, Engine, EngineOptions
from agent.detection.loader import LoadReport, Rejection, load_rules
from agent.detection.rule import CorrelationRule, DetectionRule, RuleOptions
from agent.detection.ruleset import Ruleset

__all__ = [
    "SUPPRESSION_RULE",
    "CorrelationRule",
    "DetectionRule",
    "Engine",
    "EngineOptions",
    "LoadReport",
    "Rejection",
    "RuleOptions",
    "Ruleset",
    "load_rules",
]

"""Turn pySigma correlation rules into :class:`~agent.detection.rule.CorrelationRule` objects.

Resolves references (by id or name) against the loaded detection rules, reports reference
cycles and unknown references as errors, rejects what the engine does not evaluate (correlations
of correlations, value_percentile/value_median, rules referencing rejected rules, group-by or
value fields the referenced logsource does not carry) and lists the base rules that stay silent
(Sigma: referenced rules produce no alerts of their own unless ``generate: true``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sigma.correlations import (
    CorrelationConditionAND,
    CorrelationConditionNOT,
    CorrelationConditionOR,
    SigmaCorrelationCondition,
    SigmaCorrelationRule,
    SigmaExtendedCorrelationCondition,
    SigmaRuleReference,
)

from agent.alerts import RuleRef
from agent.detection.fields import lookup
from agent.detection.rule import (
    OPTIONS_KEY,
    CorrelationRule,
    CorrelationType,
    DetectionRule,
    RuleOptions,
    Source,
)
from agent.errors import RuleError

SUPPORTED = {t.value: t for t in CorrelationType}
VALUE_TYPES = (CorrelationType.VALUE_COUNT, CorrelationType.VALUE_SUM, CorrelationType.VALUE_AVG)
TEMPORAL_TYPES = (CorrelationType.TEMPORAL, CorrelationType.TEMPORAL_ORDERED)
RejectionTuple = tuple[str, int, str, str, str, str]


@dataclass
class Outcome:
    correlations: list[CorrelationRule] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    rejections: list[RejectionTuple] = field(default_factory=list)
    silenced: list[str] = field(default_factory=list)


class _Reject(Exception):
    def __init__(self, reason: str, category: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.category = category


def compile_all(
    cands: list[Any],
    names: Mapping[str, str],
    detections: Mapping[str, DetectionRule],
    rejected: Mapping[str, str],
    broken: set[str],
    ids: Mapping[str, Source],
    rule_ref: Callable[[Any], RuleRef],
) -> Outcome:
    out = Outcome()
    corr_ids = {c.rule_id for c in cands}

    def resolve(ref: str) -> str | None:
        if ref in ids:
            return ref
        return names.get(ref)

    refs: dict[str, list[str]] = {}
    for cand in cands:
        targets: list[str] = []
        unknown = []
        for ref in _references(cand.rule):
            target = resolve(ref)
            if target is None:
                unknown.append(ref)
            else:
                targets.append(target)
        if unknown:
            out.errors.append(RuleError(
                f"correlation references unknown rule(s): {', '.join(unknown)}",
                cand.source.path, _rules_line(cand)))
            broken.add(cand.rule_id)
        refs[cand.rule_id] = targets
    for cycle in _cycles({k: [t for t in v if t in corr_ids] for k, v in refs.items()}):
        for rule_id in dict.fromkeys(cycle):
            cand = next(c for c in cands if c.rule_id == rule_id)
            out.errors.append(RuleError(
                "correlation reference cycle: " + " -> ".join([*cycle, cycle[0]]),
                cand.source.path, _rules_line(cand)))
            broken.add(rule_id)
    for cand in cands:
        if cand.rule_id in broken:
            continue
        try:
            out.correlations.append(_compile(cand, refs[cand.rule_id], detections, rejected,
                                             corr_ids, rule_ref))
        except _Reject as exc:
            out.rejections.append((cand.source.path, cand.source.line, cand.rule_id,
                                   cand.rule.title, exc.reason, exc.category))
            continue
        except RuleError as exc:
            out.errors.append(exc)
            continue
        except Exception as exc:  # never let one odd rule stop the daemon
            out.errors.append(RuleError(f"cannot compile: {type(exc).__name__}: {exc}",
                                        cand.source.path, cand.source.line))
            continue
        if not cand.rule.generate:
            out.silenced.extend(refs[cand.rule_id])
    return out


def _references(rule: SigmaCorrelationRule) -> list[str]:
    if rule.rules is not None:
        return [r.reference for r in rule.rules]
    if isinstance(rule.condition, SigmaExtendedCorrelationCondition):
        return list(rule.condition.get_referenced_rules())
    return []


def _rules_line(cand: Any) -> int:
    start, end = cand.doc_span
    for i in range(start - 1, min(end, len(cand.lines))):
        if cand.lines[i].strip().startswith("rules:"):
            return i + 1
    return int(start)


def _cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """Every elementary cycle found by depth-first search (each reported once)."""
    found: list[list[str]] = []
    seen_sets: set[frozenset[str]] = set()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):]
                key = frozenset(cycle)
                if key not in seen_sets:
                    seen_sets.add(key)
                    found.append(list(cycle))
            elif state.get(nxt) is None:
                visit(nxt, path)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if state.get(node) is None:
            visit(node, [])
    return found


def _compile(
    cand: Any,
    targets: list[str],
    detections: Mapping[str, DetectionRule],
    rejected: Mapping[str, str],
    corr_ids: set[str],
    rule_ref: Callable[[Any], RuleRef],
) -> CorrelationRule:
    rule: SigmaCorrelationRule = cand.rule
    ctype = SUPPORTED.get(rule.type.name.lower())
    if ctype is None:
        raise _Reject(f"correlation type {rule.type.name.lower()} is not supported", "feature")
    if not targets:
        raise RuleError("correlation references no rules", cand.source.path, cand.source.line)
    for target in targets:
        if target in corr_ids:
            raise _Reject("correlations of correlations are not supported", "feature")
        if target in rejected:
            raise _Reject(f"referenced rule {target} is rejected: {rejected[target]}", "reference")
        if target not in detections:
            raise RuleError(f"referenced rule {target} failed to load",
                            cand.source.path, _rules_line(cand))
    try:
        options = RuleOptions.from_attribute(rule.custom_attributes.get(OPTIONS_KEY))
    except ValueError as exc:
        raise RuleError(str(exc), cand.source.path, cand.source.line) from None
    if options.group_by:
        raise RuleError(f"{OPTIONS_KEY}.group_by is for single-event rules; a correlation "
                        "groups by its group-by", cand.source.path, cand.source.line)
    extra = []
    for name in options.fields:
        entry = lookup(*detections[targets[0]].logsource)
        resolved = entry.resolve(name) if entry is not None else None
        if resolved is None:
            raise RuleError(f"{OPTIONS_KEY}.fields: {name!r} is not a field of the referenced "
                            "rules' events", cand.source.path, cand.source.line)
        extra.append(resolved)
    options = replace(options, fields=tuple(extra))
    aliases = {a.alias: {r.reference: f for r, f in a.mapping.items()} for a in rule.aliases}
    refs_by_target = dict(zip(_references(rule), targets, strict=True))
    back = {t: r for r, t in refs_by_target.items()}
    group_by = tuple(rule.group_by or ())
    group_fields: dict[str, tuple[str, ...]] = {}
    for target in dict.fromkeys(targets):
        group_fields[target] = tuple(
            _field(detections[target], aliases.get(g, {}).get(back[target], g), "group-by")
            for g in group_by
        )
    group_names = tuple(g if g in aliases else group_fields[targets[0]][i]
                        for i, g in enumerate(group_by))
    op: str | None = None
    threshold: float | None = None
    value_field: dict[str, str] = {}
    expression = None
    cond = rule.condition
    if isinstance(cond, SigmaExtendedCorrelationCondition):
        expression = _expression(cond.parsed, refs_by_target)
    elif isinstance(cond, SigmaCorrelationCondition):
        given = isinstance(cand.doc.get("correlation"), dict) and "condition" in cand.doc[
            "correlation"]
        if ctype not in TEMPORAL_TYPES or given:
            op, threshold = cond.op.name.lower(), float(cond.count)
        if ctype in VALUE_TYPES:
            if not isinstance(cond.fieldref, str):
                raise RuleError("condition field must be one field name",
                                cand.source.path, cand.source.line)
            for target in dict.fromkeys(targets):
                value_field[target] = _field(detections[target], cond.fieldref, "condition")
    if ctype == CorrelationType.TEMPORAL_ORDERED and op is not None:
        raise _Reject("temporal_ordered with a count condition is not supported", "feature")
    if ctype in TEMPORAL_TYPES and len(set(targets)) != len(targets):
        raise RuleError("a temporal correlation lists the same rule twice",
                        cand.source.path, _rules_line(cand))
    return CorrelationRule(
        ref=rule_ref(cand),
        name=rule.name,
        source=cand.source,
        type=ctype,
        rules=tuple(targets),
        group_by=group_by,
        group_fields=group_fields,
        group_names=group_names,
        timespan=float(rule.timespan.seconds),
        op=op,
        threshold=threshold,
        value_field=value_field,
        expression=expression,
        options=options,
        content_hash=_hash(cand.doc, (detections[t].content_hash for t in targets)),
    )


def _field(rule: DetectionRule, name: str, what: str) -> str:
    entry = lookup(*rule.logsource)
    resolved = entry.resolve(name) if entry is not None else None
    if resolved is None:
        where = "/".join(p for p in rule.logsource if p)
        raise _Reject(f"{what} field {name!r} is not carried by {where} events (rule {rule.id})",
                      "field")
    return resolved


def _expression(node: Any, refs: Mapping[str, str]) -> Callable[[frozenset[str]], bool]:
    if isinstance(node, SigmaRuleReference):
        target = refs[node.reference]
        return lambda seen: target in seen
    args = [_expression(a, refs) for a in node.args]
    if isinstance(node, CorrelationConditionNOT):
        inner = args[0]
        return lambda seen: not inner(seen)
    if isinstance(node, CorrelationConditionAND):
        return lambda seen: all(a(seen) for a in args)
    if isinstance(node, CorrelationConditionOR):
        return lambda seen: any(a(seen) for a in args)
    raise _Reject(f"extended condition element {type(node).__name__} is not supported", "feature")


def _hash(doc: dict[str, Any], parts: Iterable[str]) -> str:
    blob = json.dumps([doc, sorted(parts)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]

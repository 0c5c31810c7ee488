"""Sigma 2.1 filters: silence some events of existing rules without editing them.

A filter is a Sigma document with ``filter:`` instead of ``detection:``::

    title: Our vulnerability scanner
    id: 4b0c1f5e-6a2d-4e8f-9c3b-2d1e0f9a8b7c
    logsource: {product: linux, service: sshd}
    filter:
      rules: [ssh_auth_failure]          # rule ids or names; ``any``: every rule of the logsource
      scanner:
        source.ip|cidr: 198.51.100.0/24
      condition: not scanner

Semantics are Sigma's (pySigma ``SigmaFilter.apply_on_rule``): the filter's condition is ANDed
with the condition of every rule it names, so an event raises (or counts toward) that rule only
when the filter's condition holds for it — ``not scanner`` silences the scanner. The filter is
compiled once per rule it applies to, through the same field mapping and matcher as the rule
itself (Sigma names such as ``SourceIp`` work where the rule's logsource maps them).

Correlation rules: filters act on **events**, so they apply to detection rules. A filter that
names a correlation rule applies to the base rules the correlation counts (which changes every
consumer of those base rules; the loader notes when others are affected). This matches what a
SIEM backend does with pySigma, where a correlation is built on its base rules' queries.

Errors (``file:line: reason``): an unknown rule id or name in ``rules:``, a rule whose
logsource the filter's logsource does not cover, a field the rule's events never carry, a
missing id, a duplicate id, invalid Sigma.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigma.exceptions import SigmaError, SigmaRuleLocation
from sigma.filters import SigmaFilter
from sigma.rule import SigmaRule

from agent.detection.codegen import Predicate, compile_tree
from agent.detection.fields import lookup
from agent.detection.matcher import Node, Tree, Unsupported, lower_tree, referenced_fields, simplify
from agent.detection.rule import CorrelationRule, DetectionRule, Source
from agent.detection.ruleset import Ruleset
from agent.detection.sigma_pipeline import vedette_pipeline
from agent.detection.yamlsafe import Document
from agent.errors import RuleError

ANY = "any"


def is_filter(data: Mapping[str, Any]) -> bool:
    """A Sigma filter document (``filter:`` and neither ``detection:`` nor ``correlation:``)."""
    return "filter" in data and "detection" not in data and "correlation" not in data


@dataclass(frozen=True, slots=True)
class FilterDoc:
    """A filter document as read from a rule file, not yet compiled."""

    path: Path
    doc: Document
    lines: Sequence[str]
    ruleset: str


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    id: str
    title: str
    source: Source
    ruleset: str
    named: tuple[str, ...]
    """The rule ids the filter names (``rules:``; correlations as written)."""
    targets: Mapping[str, Predicate]
    """Detection rule id → the filter's predicate on that rule's events (all must hold)."""


@dataclass
class FilterSet:
    filters: list[CompiledFilter] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def by_rule(self, exclude: frozenset[str] = frozenset()) -> dict[str, tuple[
            tuple[str, Predicate], ...]]:
        """Detection rule id → (filter id, predicate) of every filter applying to it."""
        out: dict[str, list[tuple[str, Predicate]]] = {}
        for flt in self.filters:
            if flt.id in exclude:
                continue
            for rule_id, pred in flt.targets.items():
                out.setdefault(rule_id, []).append((flt.id, pred))
        return {k: tuple(v) for k, v in out.items()}


def compile_filters(
    docs: Sequence[FilterDoc], ruleset: Ruleset, rule_ids: Mapping[str, Source],
    rejected: frozenset[str] = frozenset(),
) -> FilterSet:
    """Parse and compile every filter against the compiled ``ruleset``; never raises."""
    out = FilterSet()
    seen: dict[str, Source] = {}
    names = {r.name: r.id for r in ruleset.rules() if r.name}
    for fdoc in docs:
        try:
            compiled = _compile(fdoc, ruleset, names, rule_ids, seen, rejected, out.notes)
        except RuleError as exc:
            out.errors.append(exc)
            continue
        except Exception as exc:  # never let one odd filter stop the daemon
            out.errors.append(RuleError(f"cannot compile filter: {type(exc).__name__}: {exc}",
                                        str(fdoc.path), fdoc.doc.line))
            continue
        if compiled is not None:
            out.filters.append(compiled)
    return out


def _compile(
    fdoc: FilterDoc, ruleset: Ruleset, names: Mapping[str, str], rule_ids: Mapping[str, Source],
    seen: dict[str, Source], rejected: frozenset[str], notes: list[str],
) -> CompiledFilter | None:
    data, src, line = fdoc.doc.data, str(fdoc.path), fdoc.doc.line

    def at(key: str) -> int:
        return _key_line(fdoc, key)

    try:
        parsed = SigmaFilter.from_dict(data, collect_errors=True,
                                       source=SigmaRuleLocation(fdoc.path))
    except Exception as exc:  # pySigma raises non-Sigma errors on odd input
        raise RuleError(f"invalid Sigma filter: {_reason(exc)}", src, line) from None
    if parsed.errors:
        reason = "; ".join(dict.fromkeys(_reason(e) for e in parsed.errors))
        key = "logsource" if "logsource" in reason.lower() else "filter"
        raise RuleError(f"invalid Sigma filter: {reason}", src, at(key))
    if parsed.id is None:
        raise RuleError("filter has no id (a UUID is required)", src, line)
    fid = str(parsed.id)
    first = rule_ids.get(fid) or seen.get(fid)
    if first is not None:
        raise RuleError(f"duplicate id {fid} (first defined at {first})", src, line)
    seen[fid] = Source(src, line)
    body = data["filter"]
    condition = body["condition"]
    selections = {k: v for k, v in body.items() if k not in ("rules", "condition")}
    if not selections:
        raise RuleError("a filter needs at least one selection besides 'rules' and "
                        "'condition'", src, at("filter"))
    wanted = _logsource(data.get("logsource"))
    refs = parsed.filter.rules
    named: list[str] = []
    targets: dict[str, Predicate] = {}
    if isinstance(refs, str):  # "any": every detection rule of the filter's logsource
        for det in ruleset.detections:
            if _covers(wanted, det.logsource):
                pred = _predicate(fdoc, det, selections, condition, strict=False)
                if pred is not None:
                    targets[det.id] = pred
    else:
        for ref in refs:
            text = str(ref.reference)
            rid = names.get(text, text)
            rule = ruleset.by_id.get(rid)
            if rule is None:
                ref_line = _value_line(fdoc, text, at("rules"))
                if rid in rejected:
                    notes.append(f"{src}:{ref_line}: note: filter {parsed.title!r}: rule {text} "
                                 "was rejected, the filter does nothing for it")
                    continue
                raise RuleError(f"filter rules: unknown rule {text!r} (not an id or name of a "
                                "loaded rule)", src, ref_line)
            named.append(rid)
            bases = _bases(rule, ruleset)
            for base in bases:
                if not _covers(wanted, base.logsource):
                    raise RuleError(
                        f"filter logsource {_ls_text(wanted)} does not cover rule {text} "
                        f"({_ls_text(base.logsource)})", src, at("logsource"))
                pred = _predicate(fdoc, base, selections, condition, strict=True)
                assert pred is not None
                targets[base.id] = pred
            if isinstance(rule, CorrelationRule):
                others = sorted({c.ref.title for b in bases
                                 for c in ruleset.consumers.get(b.id, ()) if c.id != rule.id}
                                | {b.ref.title for b in bases if b.output})
                if others:
                    notes.append(f"{src}:{line}: note: filter {parsed.title!r} names correlation "
                                 f"{text}; it filters its base rule events, which also feed: "
                                 + ", ".join(others))
    if not targets:
        notes.append(f"{src}:{line}: note: filter {parsed.title!r} applies to no loaded rule "
                     "(none of its logsource carries its fields)" if isinstance(refs, str) else
                     f"{src}:{line}: note: filter {parsed.title!r} applies to no loaded rule")
    return CompiledFilter(fid, parsed.title, Source(src, line), fdoc.ruleset, tuple(named),
                          targets)


def _bases(rule: DetectionRule | CorrelationRule, ruleset: Ruleset) -> list[DetectionRule]:
    if isinstance(rule, DetectionRule):
        return [rule]
    out = []
    for rid in dict.fromkeys(rule.rules):
        base = ruleset.by_id.get(rid)
        if isinstance(base, DetectionRule):
            out.append(base)
    return out


LogsourceKey = tuple[str | None, str | None, str | None]


def _logsource(raw: Any) -> LogsourceKey:
    raw = raw if isinstance(raw, Mapping) else {}
    return (raw.get("product"), raw.get("category"), raw.get("service"))


def _covers(wanted: LogsourceKey, have: LogsourceKey) -> bool:
    """Sigma's ``rule.logsource in filter.logsource``: every part the filter sets is equal."""
    return all(w is None or w == h for w, h in zip(wanted, have, strict=True))


def _ls_text(key: LogsourceKey) -> str:
    return "/".join(str(p) for p in key if p) or "(any)"


def _predicate(
    fdoc: FilterDoc, rule: DetectionRule, selections: dict[str, Any], condition: str,
    strict: bool,
) -> Predicate | None:
    """The filter compiled for the events of ``rule`` (its logsource's field mapping)."""
    src = str(fdoc.path)
    product, category, service = rule.logsource
    logsource = {k: v for k, v in (("product", product), ("category", category),
                                   ("service", service)) if v}
    synthetic = {
        "title": f"filter {fdoc.doc.data.get('title', '')}",
        "logsource": logsource,
        "detection": {**selections, "condition": condition},
    }
    try:
        sigma_rule = SigmaRule.from_dict(synthetic, source=SigmaRuleLocation(fdoc.path))
        vedette_pipeline().apply(sigma_rule)
        trees = [lower_tree(c.parsed) for c in sigma_rule.detection.parsed_condition]
    except Unsupported as exc:
        raise RuleError(f"filter: {exc}", src, _key_line(fdoc, "filter")) from None
    except SigmaError as exc:
        reason = _reason(exc)
        raise RuleError(f"filter: {reason}", src, _guess_line(fdoc, reason)) from None
    tree: Tree = trees[0] if len(trees) == 1 else Node("or", list(trees))
    entry = lookup(*rule.logsource)
    assert entry is not None  # a compiled rule's logsource is in the catalogue
    missing = [f for f in referenced_fields(tree) if entry.resolve(f) is None]
    if missing:
        if not strict:
            return None
        raise RuleError(
            f"filter field(s) {', '.join(missing)} are not carried by {entry.key_text} events "
            f"(rule {rule.ref.title!r}; see docs/events.md)", src,
            _value_line(fdoc, missing[0], _key_line(fdoc, "filter")))
    return compile_tree(simplify(tree))


def _reason(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, SigmaError) and exc.args else str(exc)
    return re.sub(r"\s+in \S+\.ya?ml$", "", text.strip()) or type(exc).__name__


def _key_line(fdoc: FilterDoc, key: str) -> int:
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*:")
    for i in range(fdoc.doc.line - 1, min(fdoc.doc.end_line, len(fdoc.lines))):
        if pattern.match(fdoc.lines[i]):
            return i + 1
    return fdoc.doc.line


def _value_line(fdoc: FilterDoc, token: str, default: int) -> int:
    for i in range(max(default, fdoc.doc.line) - 1, min(fdoc.doc.end_line, len(fdoc.lines))):
        if token in fdoc.lines[i]:
            return i + 1
    return default


def _guess_line(fdoc: FilterDoc, reason: str) -> int:
    for token in re.findall(r"'([^']{1,200})'", reason):
        line = _value_line(fdoc, token, 0)
        if line:
            return line
    return _key_line(fdoc, "filter")

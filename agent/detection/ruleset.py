"""An immutable, compiled rule set with its routing index.

Routing is required for correctness: a rule only sees events of its logsource (product, and
category/service when the rule sets them). Inside a logsource, rules are indexed by a cheap
*discriminator* computed from their condition — a field value the event must have for the rule to
possibly match (exact value of a field, or the basename of ``process.executable`` for
``Image|endswith: /curl`` style rules) — so that an event meets only the rules it could match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import re2 as _re2  # google-re2: the linear-time guarantee; a declared dependency, no fallback

from agent.detection.codegen import literal
from agent.detection.matcher import Leaf, Tree, referenced_fields
from agent.detection.regex_literals import regex_literals
from agent.detection.rule import CorrelationRule, DetectionRule, Rule
from agent.events import LogSource

if TYPE_CHECKING:
    from agent.detection.tuning import Tuning

BASENAME_FIELDS = frozenset({"process.executable", "process.parent.executable", "file.path"})
MAX_ROUTES = 1024

Key = tuple[str, str, str]  # (field, kind, value); kind: "eq" | "base" | "sub"
_EXACT = ("eq", "base")


def discriminator(tree: Tree) -> frozenset[Key] | None:
    """Keys of which every matching event satisfies at least one, or ``None``.

    ``(f, "eq", v)``: the lowered field equals ``v``; ``(f, "base", v)``: the path's last
    component is ``v``; ``(f, "sub", v)``: the lowered field contains ``v``.
    """
    if isinstance(tree, Leaf):
        return _leaf_keys(tree)
    if tree.op == "not":
        return None
    subs = [discriminator(a) for a in tree.args]
    if tree.op == "and":
        known = [s for s in subs if s]
        return min(known, key=_selectivity) if known else None
    if any(not s for s in subs):
        return None
    return frozenset().union(*(s for s in subs if s))


LOW_CARDINALITY = frozenset({
    "type", "SYSCALL", "event.action", "event.outcome", "event.category", "event.type",
    "network.direction", "network.transport", "network.initiated",
})
"""Fields with a handful of values, most events carrying the common ones (auditd's ``type``
is EXECVE or SYSCALL on most records): an exact key on them selects little."""


def _selectivity(keys: frozenset[Key]) -> tuple[int, int, int]:
    """Lower is better: exact lookups before substring search (except on fields of a handful
    of values, after substrings of 4+ characters), few keys, long literals."""
    exact = all(k[1] in _EXACT for k in keys)
    shortest = min(len(k[2]) for k in keys)
    if exact and all(k[0] in LOW_CARDINALITY for k in keys):
        return (2, len(keys), -shortest)
    return (0 if exact else 1 if shortest >= 4 else 3, len(keys), -shortest)


def _leaf_keys(leaf: Leaf) -> frozenset[Key] | None:
    if leaf.kind == "re":
        lits = regex_literals(getattr(leaf.values[0], "pattern", ""))
        return frozenset((leaf.field, "sub", lit) for lit in lits) if lits else None
    if leaf.kind == "set":
        pairs = leaf.values
    elif leaf.kind in ("eq", "prefix", "suffix", "contains", "glob"):
        pairs = [(leaf.kind, v) for v in leaf.values]
    else:
        return None
    keys: set[Key] = set()
    for kind, value in pairs:
        key = _string_key(leaf.field, kind, value, leaf.cased)
        if key is None:
            return None
        keys.add(key)
    return frozenset(keys) if keys else None


def _string_key(name: str, kind: str, value: Any, cased: bool) -> Key | None:
    if kind == "glob":
        value = value[1]  # (pattern, longest literal chunk)
    if not isinstance(value, str) or not value:
        return None
    if cased:
        value = value.lower()
    if name in BASENAME_FIELDS and kind in ("eq", "suffix") and "/" in value:
        base = value.rsplit("/", 1)[1]
        if base:
            return (name, "base", base)
    if kind == "eq" and name not in BASENAME_FIELDS:
        return (name, "eq", value)
    return (name, "sub", value)


class Substrings:
    """All literals of one field found in one pass, mapped to their rules.

    Few literals: a stdlib alternation (plain literals, no backtracking) says in one C call
    whether any is present, then a short loop finds which. Many literals: one RE2 set match.
    """

    SMALL = 16

    def __init__(self, literals: dict[str, list[DetectionRule]]) -> None:
        self.literals = list(literals)
        self.rules = [tuple(v) for v in literals.values()]
        self._pairs = list(zip(self.literals, self.rules, strict=True))
        self._pre: Any = None
        self._match: Any = None
        if len(literals) <= self.SMALL:
            ordered = sorted(self.literals, key=len, reverse=True)
            self._pre = re.compile("|".join(map(literal, ordered)), re.S).search
            return
        matcher = _re2.Set.SearchSet()
        for lit in self.literals:
            matcher.Add(literal(lit).encode("utf-8", "surrogatepass"))  # as the text is
        matcher.Compile()
        inner = getattr(matcher, "_set", None)
        self._bytes = inner is not None
        # the binding itself (bytes in, indices out) skips the wrapper's type checks
        self._match = inner.Match if inner is not None else matcher.Match

    def hits(self, text: str) -> list[tuple[DetectionRule, ...]]:
        if self._pre is not None:
            if self._pre(text) is None:
                return []
            return [rules for lit, rules in self._pairs if lit in text]
        found = self._match(text.encode("utf-8", "surrogatepass") if self._bytes else text)
        return [self.rules[i] for i in found] if found else []


@dataclass(frozen=True, slots=True)
class Route:
    """The detection rules an event of one logsource can meet."""

    always: tuple[DetectionRule, ...]
    exact: tuple[tuple[str, bool, dict[str, tuple[DetectionRule, ...]]], ...]
    """(field, basename lookup?, value → rules)"""
    substrings: tuple[tuple[str, Substrings], ...]
    """(field, literals found in it → rules); :mod:`agent.detection.probe` selects candidates"""

    empty: bool = False
    """No rule at all for this logsource (set by the builder)."""
    fields: tuple[str, ...] = ()
    """Every field a rule of this route reads: its matches depend on nothing else."""


def _applies(rule_ls: tuple[str | None, str | None, str | None], ls: LogSource) -> bool:
    return all(want is None or want == have for want, have in zip(rule_ls, ls, strict=True))


@dataclass(frozen=True)
class Ruleset:
    detections: tuple[DetectionRule, ...] = ()
    correlations: tuple[CorrelationRule, ...] = ()
    _routes: dict[LogSource, Route] = field(default_factory=dict, repr=False, compare=False)
    by_id: dict[str, Rule] = field(default_factory=dict, repr=False, compare=False)
    consumers: dict[str, tuple[CorrelationRule, ...]] = field(
        default_factory=dict, repr=False, compare=False
    )
    _active: tuple[DetectionRule, ...] = field(default=(), init=False, repr=False, compare=False)
    tuning: Tuning | None = field(default=None, repr=False, compare=False)
    """Filters and trusted sources checked after a match (:mod:`agent.detection.tuning`)."""

    def __post_init__(self) -> None:
        for rule in self.rules():
            self.by_id[rule.id] = rule
        users: dict[str, list[CorrelationRule]] = {}
        for corr in self.correlations:
            for rid in dict.fromkeys(corr.rules):
                users.setdefault(rid, []).append(corr)
        self.consumers.update({k: tuple(v) for k, v in users.items()})
        # Rules that neither alert nor feed a correlation need not be evaluated.
        active = tuple(d for d in self.detections if d.output or d.id in self.consumers)
        object.__setattr__(self, "_active", active)

    def rules(self) -> list[Rule]:
        """Detection rules then correlation rules."""
        return [*self.detections, *self.correlations]

    def __len__(self) -> int:
        return len(self.detections) + len(self.correlations)

    def route(self, logsource: LogSource) -> Route:
        route = self._routes.get(logsource)
        if route is None:
            route = self._build_route(logsource)
            if len(self._routes) < MAX_ROUTES:
                self._routes[logsource] = route
        return route

    def _build_route(self, logsource: LogSource) -> Route:
        always: list[DetectionRule] = []
        exact: dict[tuple[str, str], dict[str, list[DetectionRule]]] = {}
        subs: dict[str, dict[str, list[DetectionRule]]] = {}
        read: set[str] = set()
        for rule in self._active:
            if not _applies(rule.logsource, logsource):
                continue
            read.update(referenced_fields(rule.tree))
            keys = discriminator(rule.tree)
            if not keys:
                always.append(rule)
                continue
            for name, kind, value in sorted(keys):
                if kind == "sub":
                    subs.setdefault(name, {}).setdefault(value, []).append(rule)
                else:
                    exact.setdefault((name, kind), {}).setdefault(value, []).append(rule)
        return Route(
            tuple(always),
            tuple((n, k == "base", {v: tuple(r) for v, r in t.items()})
                  for (n, k), t in exact.items()),
            tuple((n, Substrings(t)) for n, t in subs.items()),
            not (always or exact or subs),
            tuple(sorted(read)),
        )
